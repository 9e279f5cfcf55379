/**
 * Image names as the Docker API composes them: the reference `POST
 * /images/create` pulls from `fromImage` and `tag`, the one `POST
 * /images/{name}/tag` creates, and the repository as Docker prints it.
 * dockerd's rules (`postImagesCreate`, `postImagesTag`), over the library's
 * reference parser. Also the record name of an image without one (loaded from
 * an archive that does not name it).
 */
import { Result } from "effect"
import { parseReferenceResult, Reference } from "../../domain/Reference.ts"

/** A malformed reference's 400 message: dockerd's words, then what is wrong. */
export const invalidReference = (problem: string): string => `invalid reference format: ${problem}`

/**
 * What `POST /containers/create` checks of its `Image` before looking it up:
 * a full image ID (64 hex digits) or a reference that parses; anything else is
 * the client's error (400, as dockerd), not an image that is missing (404).
 */
export const imageNameProblem = (image: string): string | undefined =>
  /^[a-f0-9]{64}$/.test(image) ? undefined : Result.match(parseReferenceResult(image), {
    onSuccess: () => undefined,
    onFailure: invalidReference
  })

/** `busybox` for `docker.io/library/busybox:latest`: the repository as Docker prints it. */
export const familiarName = (reference: Reference): string =>
  new Reference(reference.domain, reference.path, undefined, undefined).familiar

/**
 * The reference `POST /images/create` pulls: `fromImage`, with `tag` (a tag or
 * a digest) in place of its own when given, as dockerd's `postImagesCreate`.
 */
export const pullReference = (fromImage: string, tag: string | undefined): Result.Result<Reference, string> =>
  Result.flatMap(parseReferenceResult(fromImage), (reference) =>
    tag === undefined || tag === ""
      ? Result.succeed(reference)
      : parseReferenceResult(tag.includes(":") ? `${reference.name}@${tag}` : `${reference.name}:${tag}`))

/** The reference `POST /images/{name}/tag?repo=&tag=` creates. */
export const tagReference = (repo: string, tag: string | undefined): Result.Result<Reference, string> =>
  Result.flatMap(parseReferenceResult(repo), (reference) => {
    if (reference.digest !== undefined) return Result.fail("refusing to create a tag with a digest reference")
    return tag === undefined || tag === "" ? Result.succeed(reference) : parseReferenceResult(`${reference.name}:${tag}`)
  })

/**
 * dockerd 25's containerd store names these `moby-dangling@<digest>`, but that is a reference
 * (`docker.io/library/moby-dangling@…`), which the library normalises: a name that is none stays as it is.
 */
const DANGLING = "<none>@"

/** The record name of an image that has no name, by its top document: `<none>@sha256:…`. */
export const danglingName = (top: { readonly digest: string }): string => `${DANGLING}${top.digest}`

/** Whether a record name is a `danglingName`: the image has no name to show. */
export const isDanglingName = (name: string): boolean => name.startsWith(DANGLING)
