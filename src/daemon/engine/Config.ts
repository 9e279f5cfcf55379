/**
 * A container's effective config: what the create request said, completed by
 * its image's defaults as dockerd's `merge` (daemon/commit.go) does. This is what
 * inspect shows and what `stop` signals with, so a container made from an image
 * with `CMD`, `ENV`, `LABEL`, `STOPSIGNAL` or `HEALTHCHECK` reads as it runs.
 */
import * as os from "node:os"
import { mergeEnv, mergeHealthcheck } from "../../domain/ContainerConfig.ts"
import type { ContainerDefaults } from "../../domain/Image.ts"
import type { ContainerConfig, HostConfig } from "../Model.ts"
import { argv } from "./HostConfig.ts"

/** The fields of a container's config its image can supply. */
export interface EffectiveConfig {
  readonly Cmd: ReadonlyArray<string> | null
  readonly Entrypoint: ReadonlyArray<string> | null
  /** The request's as given (bare names kept), then the image's it did not name: what inspect shows. */
  readonly Env: ReadonlyArray<string>
  readonly Labels: Readonly<Record<string, string>>
  readonly WorkingDir: string
  readonly User: string
  /** Empty when neither the request nor the image sets one. */
  readonly StopSignal: string
  /** The request's Healthcheck over the image's, field by field; undefined when neither has one. */
  readonly Healthcheck: Readonly<Record<string, unknown>> | undefined
}

/** The request's config completed by the image's (absent for containers created before images were recorded). */
export const effectiveConfig = (request: ContainerConfig, image: ContainerDefaults | undefined): EffectiveConfig => {
  const entrypoint = argv(request.Entrypoint)
  const cmd = argv(request.Cmd)
  // As dockerd: an entrypoint of the request's own drops the image's Cmd; an empty one clears the image's.
  const ownEntrypoint = entrypoint !== undefined && entrypoint.length > 0
  return {
    Cmd: (ownEntrypoint || (cmd !== undefined && cmd.length > 0) ? cmd : image?.Cmd ?? cmd) ?? null,
    Entrypoint: (entrypoint ?? image?.Entrypoint) ?? null,
    Env: mergeEnv(image?.Env ?? [], request.Env ?? []),
    Labels: { ...image?.Labels, ...request.Labels },
    WorkingDir: request.WorkingDir || image?.WorkingDir || "",
    User: request.User || image?.User || "",
    StopSignal: request.StopSignal || image?.StopSignal || "",
    Healthcheck: mergeHealthcheck(request.Healthcheck, image?.Healthcheck)
  }
}

/** The signal `docker stop` sends: the container's, else its image's, else SIGTERM. */
export const stopSignalOf = (config: EffectiveConfig): string => config.StopSignal || "SIGTERM"

/** The container's hostname: the request's, else (as dockerd) the host's on the host's network, else its short id. */
export const hostnameOf = (id: string, config: ContainerConfig, host: HostConfig): string =>
  config.Hostname || (host.NetworkMode === "host" ? os.hostname() : id.slice(0, 12))
