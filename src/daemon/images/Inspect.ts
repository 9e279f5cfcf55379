/**
 * `GET /images/{name}/json`: an image as `docker image inspect` shows it,
 * from what the library resolved (its config and manifest); what containerd
 * does not keep (parent, comment, Docker version, last tag time) is empty as
 * in dockerd's containerd image store. `ContainerConfig` (the config of the
 * container a legacy build committed) is dockerd 20.10's zero value: no image
 * here comes from a build container, and docker-compose 1.29 reads it on every
 * recreate (a KeyError without it).
 */
import { ZERO_TIME } from "../Model.ts"
import { type Group, imageSize, repoDigests, repoTags } from "./Listing.ts"

/** `GET /images/{name}/json`. */
export interface ImageInspectJson {
  readonly Id: string
  readonly RepoTags: ReadonlyArray<string>
  readonly RepoDigests: ReadonlyArray<string>
  readonly Parent: string
  readonly Comment: string
  readonly Created: string
  readonly DockerVersion: string
  readonly Author: string
  readonly Config: Readonly<Record<string, unknown>>
  readonly ContainerConfig: Readonly<Record<string, unknown>>
  readonly Architecture: string
  readonly Variant?: string
  readonly Os: string
  readonly Size: number
  readonly GraphDriver: { readonly Name: string; readonly Data: null }
  readonly RootFS: { readonly Type: "layers"; readonly Layers: ReadonlyArray<string> }
  readonly Metadata: { readonly LastTagTime: string }
  readonly Descriptor: { readonly mediaType: string; readonly digest: string; readonly size: number }
}

/** dockerd 20.10's `ContainerConfig` of an image no build container made: Go's zero `container.Config`. */
const NO_CONTAINER_CONFIG = {
  Hostname: "", Domainname: "", User: "", AttachStdin: false, AttachStdout: false, AttachStderr: false,
  Tty: false, OpenStdin: false, StdinOnce: false, Env: null, Cmd: null, Image: "", Volumes: null,
  WorkingDir: "", Entrypoint: null, OnBuild: null, Labels: null
}

/** The inspect document of an image. */
export const inspectJson = (group: Group): ImageInspectJson => {
  const { record, resolved } = group.entries[0]!
  const config = resolved.config
  const defaults = config.config ?? {}
  const target = record.target
  return {
    Id: group.id,
    RepoTags: repoTags(group),
    RepoDigests: repoDigests(group),
    Parent: "",
    Comment: config.comment ?? "",
    Created: config.created ?? ZERO_TIME,
    DockerVersion: "",
    Author: config.author ?? "",
    Config: {
      ...defaults,
      Cmd: defaults.Cmd ?? null,
      Entrypoint: defaults.Entrypoint ?? null,
      Env: defaults.Env ?? null,
      WorkingDir: defaults.WorkingDir ?? "",
      User: defaults.User ?? "",
      Labels: defaults.Labels ?? null,
      ExposedPorts: defaults.ExposedPorts ?? null,
      Volumes: defaults.Volumes ?? null,
      StopSignal: defaults.StopSignal ?? ""
    },
    ContainerConfig: NO_CONTAINER_CONFIG,
    Architecture: config.architecture,
    ...(config.variant === undefined ? {} : { Variant: config.variant }),
    Os: config.os,
    Size: imageSize(resolved),
    GraphDriver: { Name: "overlayfs", Data: null },
    RootFS: { Type: "layers", Layers: config.rootfs.diff_ids },
    Metadata: { LastTagTime: ZERO_TIME },
    Descriptor: { mediaType: target.mediaType, digest: target.digest, size: target.size }
  }
}
