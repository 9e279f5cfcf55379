/**
 * The streamed answers of the Docker Engine API: JSON lines (`wait`, `events`,
 * pull progress), Docker's multiplexed stdcopy frames (attach and logs without a
 * terminal), and the hijacked connection of an attach or exec (`Upgrade: tcp`),
 * on which the client's stdin is scanned for its detach keys.
 *
 * Streams send their headers at once, as dockerd flushes them: `docker run`
 * waits for the headers of its `wait` before it starts the container.
 */
import { Deferred, Effect, Result, type Scope, Stream } from "effect"
import { HttpServerRequest, HttpServerResponse } from "effect/http"
import { badRequest, type DockerError } from "../DockerError.ts"
import type { AttachSession } from "../Engine.ts"
import { detachScanner } from "./DetachKeys.ts"
import { apiVersionOf, compareVersions } from "./Query.ts"
import { RouterHeaders } from "./Request.ts"

const encoder = new TextEncoder()

/** A streamed response; the empty first chunk makes Node send the headers at once. */
export const flushedStream = (chunks: Stream.Stream<Uint8Array>, contentType: string) =>
  HttpServerResponse.stream(Stream.concat(Stream.make(new Uint8Array(0)), chunks), { contentType })

/** Values as JSON lines, streamed; pull progress separates them with `\r\n`, as dockerd's. */
export const jsonLines = (values: Stream.Stream<unknown>, separator = "\n") =>
  flushedStream(Stream.map(values, (value) => encoder.encode(JSON.stringify(value) + separator)), "application/json")

/** A frame of Docker's multiplexed stream (attach, logs without a TTY): `[stream,0,0,0,size(u32 BE)]` then the payload; 0 stdin, 1 stdout, 2 stderr. */
export const frame = (stream: 0 | 1 | 2, payload: Uint8Array): Uint8Array => {
  const out = new Uint8Array(8 + payload.byteLength)
  out[0] = stream
  new DataView(out.buffer).setUint32(4, payload.byteLength, false)
  out.set(payload, 8)
  return out
}

/** How attach and logs frame output: raw bytes for a terminal, else Docker's multiplexed frames. */
const framed = (tty: boolean) => (stream: "stdout" | "stderr", data: Uint8Array): Uint8Array =>
  tty ? data : frame(stream === "stdout" ? 1 : 2, data)

const streamContentType = (tty: boolean) =>
  tty ? "application/vnd.docker.raw-stream" : "application/vnd.docker.multiplexed-stream"

/** A container's or exec's output as a response body (attach without a hijack, logs). */
export const outputResponse = (tty: boolean, output: AttachSession["output"]) => {
  const frameOf = framed(tty)
  return flushedStream(Stream.map(output, ({ data, stream }) => frameOf(stream, data)), streamContentType(tty))
}

/**
 * How an attach or an attached exec is written: multiplexed (stdcopy frames) or
 * raw, and the `Content-Type` of the hijacked answer. An attach frames as its
 * container's terminal says; an exec as its *start* request says (dockerd's
 * `execStartCheck.Tty`), whatever the exec was created with.
 */
interface Framing {
  readonly multiplexed: boolean
  /** Repeat the router's headers in the 101, as dockerd's exec start does (its attach does not). */
  readonly routerHeaders: boolean
  /** The API version the client asked for: before 1.42 dockerd names every hijacked stream raw. */
  readonly apiVersion: string
}

/** dockerd's `Content-Type` of a hijacked stream: multiplexed only from API 1.42, raw before (and for a terminal). */
const hijackedContentType = (framing: Framing) =>
  streamContentType(!(framing.multiplexed && compareVersions(framing.apiVersion, "1.42") >= 0))

/** The API version of the request, from its path's prefix (`/v1.41/...`); the newest when it has none. */
export const requestApiVersion = Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
  apiVersionOf(new URL(request.originalUrl, "http://docker").pathname))

/**
 * An attach over the connection the client hijacks (`Upgrade: tcp`, as the
 * docker CLI does): the `101` written first, then the session opened (an exec
 * is started only now, as dockerd's `postContainerExecStart` starts it after
 * writing its headers, so no output can come in the read that carries them: a
 * client that parses the headers through a buffered reader and then reads the
 * raw socket would lose it); its output framed onto the connection until the
 * run ends, its input fed to the stdin until the client half-closes its side
 * or detaches. A session that cannot be opened has its error written into the
 * stream (a stdout frame when multiplexed) and `\r\n`, as dockerd writes it.
 *
 * Gotchas: the detach keys end the connection at once, and the container keeps
 * running. When the input ends (detached, or the client went away) the
 * container's stdin is closed only without a terminal, as dockerd closes it
 * (`CloseStdin && !TTY`) for a container with `StdinOnce` and for an exec: the
 * docker CLI detaches a `run -it` by itself and drops the connection, and the
 * shell must survive that.
 */
const hijack = (
  request: HttpServerRequest.HttpServerRequest,
  open: Effect.Effect<AttachSession, DockerError, Scope.Scope>,
  framing: Framing,
  detachKeys: Uint8Array
) =>
  Effect.gen(function*() {
    const headers = { "content-type": hijackedContentType(framing), ...(framing.routerHeaders ? yield* RouterHeaders : {}) }
    const socket = yield* request.upgradeWith({ headers }).pipe(
      Effect.mapError((error) => badRequest(`could not upgrade the connection: ${error.message}`))
    )
    // Acquiring the reader writes the 101. A connection that cannot be read from has sent its
    // last input: output is still streamed to it.
    const reader = yield* socket.reader.pipe(Effect.orElseSucceed(() => undefined))
    const writer = yield* socket.writer
    const frameOf = framed(!framing.multiplexed)
    const opened = yield* Effect.result(open)
    if (Result.isFailure(opened)) {
      // Harmless if it fails: the client is gone, and the failure is also in exec inspect's exit code.
      yield* writer.write(frameOf("stdout", encoder.encode(`${opened.failure.message}\r\n`))).pipe(Effect.ignore)
      return HttpServerResponse.empty({ status: 101 })
    }
    const session = opened.success
    const detached = yield* Deferred.make<void>()
    const inputEnded = session.tty ? Effect.void : session.endInput
    if (reader !== undefined && session.write !== undefined) {
      const write = session.write
      const scan = detachScanner(detachKeys)
      const pump = Effect.gen(function*() {
        while (true) {
          for (const chunk of yield* reader.pull) {
            const { detached: done, forward } = scan(typeof chunk === "string" ? encoder.encode(chunk) : chunk)
            if (forward.byteLength > 0) yield* write(forward)
            if (done) return yield* Deferred.succeed(detached, undefined)
          }
        }
      }).pipe(Effect.catch(() => inputEnded))
      yield* Effect.forkScoped(pump)
    }
    yield* Effect.raceFirst(
      // A write that fails means the client is gone: the session ends; the container is not affected.
      Stream.runForEach(session.output, ({ data, stream }) => writer.write(frameOf(stream, data))).pipe(Effect.ignore),
      Deferred.await(detached).pipe(Effect.andThen(inputEnded))
    )
    return HttpServerResponse.empty({ status: 101 })
  })

/**
 * Answers an attach or an attached exec, opening its session (`open`): over
 * the hijacked connection when the client asks for one (`Upgrade`), after the
 * `101`; else (dockerode without stdin) with the framed output as the response
 * body, the error of a session that cannot be opened written into it.
 */
export const respondAttached = (
  open: Effect.Effect<AttachSession, DockerError, Scope.Scope>,
  options: { readonly multiplexed: boolean; readonly routerHeaders?: boolean; readonly detachKeys: Uint8Array }
) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const framing: Framing = {
      multiplexed: options.multiplexed,
      routerHeaders: options.routerHeaders === true,
      apiVersion: yield* requestApiVersion
    }
    if (request.headers["upgrade"] !== undefined) return yield* hijack(request, open, framing, options.detachKeys)
    const output = Stream.unwrap(Effect.match(open, {
      onSuccess: (session) => session.output,
      onFailure: (error) => Stream.make({ stream: "stdout" as const, data: encoder.encode(`${error.message}\r\n`) })
    }))
    return outputResponse(!options.multiplexed, output)
  })
