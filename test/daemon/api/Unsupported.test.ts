/**
 * The table of refused routes: each route of the Docker API not served here
 * gets its refusal, the swarm ones dockerd's messages, and nothing served here
 * (nor an unknown path) is refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { refusalOf } from "../../../src/daemon/api/Unsupported.ts"

const NOT_A_MANAGER =
  "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."

describe("refusalOf", () => {
  const refused: ReadonlyArray<readonly [string, string, 501 | 503, string]> = [
    ["GET", "/plugins", 501, "plugins are not supported by effect-containerd"],
    ["GET", "/plugins/privileges", 501, "plugins are not supported by effect-containerd"],
    ["POST", "/images/team/app/push", 501, "pushing images is not supported by effect-containerd"],
    ["GET", "/images/search", 501, "searching registries is not supported by effect-containerd"],
    ["HEAD", "/images/search", 501, "searching registries is not supported by effect-containerd"],
    ["POST", "/build", 501, "building images is not supported by effect-containerd"],
    ["POST", "/build/prune", 501, "pruning the build cache is not supported by effect-containerd"],
    ["POST", "/build/cancel", 501, "building images is not supported by effect-containerd"],
    ["POST", "/session", 501, "build sessions are not supported by effect-containerd"],
    ["POST", "/grpc", 501, "build sessions are not supported by effect-containerd"],
    ["GET", "/distribution/docker.io/library/busybox/json", 501, "distribution inspection is not supported by effect-containerd"],
    ["POST", "/swarm/init", 501, "swarm mode is not supported by effect-containerd"],
    ["POST", "/swarm/join", 501, "swarm mode is not supported by effect-containerd"],
    ["POST", "/swarm/leave", 503, "This node is not part of a swarm"],
    ["GET", "/swarm", 503, NOT_A_MANAGER],
    ["GET", "/swarm/unlockkey", 503, NOT_A_MANAGER],
    ["POST", "/swarm/unlock", 503, NOT_A_MANAGER],
    ["GET", "/nodes", 503, NOT_A_MANAGER],
    ["GET", "/services/web", 503, NOT_A_MANAGER],
    ["POST", "/services/create", 503, NOT_A_MANAGER],
    ["GET", "/tasks", 503, NOT_A_MANAGER],
    ["GET", "/secrets", 503, NOT_A_MANAGER],
    ["GET", "/configs/x", 503, NOT_A_MANAGER]
  ]
  for (const [method, path, status, message] of refused) {
    it(`${method} ${path} is ${status}`, () => assert.deepStrictEqual(refusalOf(method, path), { status, message }))
  }

  const served: ReadonlyArray<readonly [string, string]> = [
    ["GET", "/containers/json"],
    ["GET", "/containers/stats/json"],
    ["POST", "/containers/create"],
    ["POST", "/containers/web/update"],
    ["GET", "/images/history/json"],
    ["GET", "/images/localhost:5000/team/app:v1/history"],
    ["GET", "/images/get"],
    ["GET", "/images/busybox/get"],
    ["POST", "/images/load"],
    ["GET", "/images/localhost:5000/team/app:v1/json"],
    ["POST", "/images/team/push/tag"],
    ["DELETE", "/images/search"],
    ["POST", "/system/df"],
    ["POST", "/auth"],
    ["POST", "/containers/web/rename"],
    ["POST", "/containers/prune"],
    ["POST", "/images/prune"],
    ["GET", "/system/df"],
    ["GET", "/volumesx"],
    ["GET", "/nope"],
    ["GET", "/containers/web/archive/x"],
    ["GET", "/containers/web/archive"],
    ["HEAD", "/containers/web/archive"],
    ["PUT", "/containers/web/archive"]
  ]
  for (const [method, path] of served) {
    it(`${method} ${path} is not refused`, () => assert.strictEqual(refusalOf(method, path), undefined))
  }
})
