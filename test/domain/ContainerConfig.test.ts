import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import {
  addGroups,
  mergeWithImage,
  type ProcessOverrides,
  processEnv,
  replaceOrAppendEnv,
  resolveUser
} from "../../src/domain/ContainerConfig.ts"
import type { ContainerDefaults } from "../../src/domain/Image.ts"

const merged = (image: ContainerDefaults, overrides: ProcessOverrides) => Result.getOrThrow(mergeWithImage(image, overrides))
const failure = <A>(result: Result.Result<A, string>) => Result.isFailure(result) ? result.failure : "ok"

describe("mergeWithImage: the command, as Docker merges it", () => {
  const table: ReadonlyArray<readonly [string, ContainerDefaults, ProcessOverrides, ReadonlyArray<string>]> = [
    ["image Cmd only", { Cmd: ["sh"] }, {}, ["sh"]],
    ["image Entrypoint and Cmd", { Entrypoint: ["ep"], Cmd: ["a"] }, {}, ["ep", "a"]],
    ["caller Cmd replaces image Cmd", { Entrypoint: ["ep"], Cmd: ["a"] }, { cmd: ["b"] }, ["ep", "b"]],
    ["caller Entrypoint drops image Cmd", { Entrypoint: ["ep"], Cmd: ["a"] }, { entrypoint: ["x"] }, ["x"]],
    ["caller Entrypoint and Cmd", { Entrypoint: ["ep"], Cmd: ["a"] }, { entrypoint: ["x"], cmd: ["y"] }, ["x", "y"]],
    ["empty Entrypoint clears the image's, keeps its Cmd", { Entrypoint: ["ep"], Cmd: ["a"] }, { entrypoint: [] }, ["a"]],
    ["[\"\"] Entrypoint (docker run --entrypoint '') with a Cmd", { Entrypoint: ["ep"], Cmd: ["a"] }, {
      entrypoint: [""],
      cmd: ["b"]
    }, ["b"]],
    ["null image fields", { Entrypoint: null, Cmd: null }, { cmd: ["true"] }, ["true"]]
  ]
  it.each(table)("%s", (_, image, overrides, args) => {
    assert.deepStrictEqual(merged(image, overrides).args, args)
  })

  it("refuses a process with no command at all", () => {
    assert.include(failure(mergeWithImage({}, {})), "no command")
    assert.include(failure(mergeWithImage(undefined, { cmd: [] })), "no command")
  })
})

describe("mergeWithImage: env, working directory and user", () => {
  const image: ContainerDefaults = { Env: ["PATH=/bin", "FOO=image"], WorkingDir: "/srv", User: "app", Cmd: ["sh"] }

  it.each([
    ["image only", {}, ["PATH=/bin", "FOO=image"]],
    ["caller first, then the image's others", { env: ["FOO=user", "BAR=1"] }, ["FOO=user", "BAR=1", "PATH=/bin"]]
  ] as const)("env: %s", (_, overrides, env) => {
    assert.deepStrictEqual(merged(image, overrides).env, env)
  })

  it.each([
    ["image's", {}, "/srv"],
    ["caller's", { workingDir: "/work" }, "/work"],
    ["neither: /", { workingDir: "" }, "/srv"]
  ] as const)("working directory: %s", (_, overrides, dir) => {
    assert.strictEqual(merged(image, overrides).workingDir, dir)
  })

  it("defaults the working directory to / and refuses a relative one", () => {
    assert.strictEqual(merged({ Cmd: ["sh"] }, {}).workingDir, "/")
    assert.include(failure(mergeWithImage({ Cmd: ["sh"] }, { workingDir: "rel" })), "needs to be an absolute path")
  })

  it("takes the caller's user, else the image's", () => {
    assert.strictEqual(merged(image, {}).user, "app")
    assert.strictEqual(merged(image, { user: "1000:2000" }).user, "1000:2000")
    assert.strictEqual(merged({ Cmd: ["sh"] }, {}).user, "")
  })
})

describe("processEnv: the daemon's defaults under the container's variables", () => {
  it.each([
    ["defaults", [], false, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=h"]],
    ["PATH replaced in place, others appended", ["FOO=1", "PATH=/bin"], false, ["PATH=/bin", "HOSTNAME=h", "FOO=1"]],
    ["TERM with a TTY", [], true, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=h", "TERM=xterm"]],
    ["a bare name unsets a default", ["HOSTNAME"], false, ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]]
  ] as const)("%s", (_, env, tty, expected) => {
    assert.deepStrictEqual(processEnv(env, { hostname: "h", tty }), expected)
  })

  it("a bare name unsets only a default, not a variable given before it (dockerd keeps FOO=1)", () => {
    assert.deepStrictEqual(replaceOrAppendEnv(["PATH=/bin", "HOSTNAME=h"], ["FOO=1", "FOO", "PATH=/x", "PATH", "BAR"]), [
      "HOSTNAME=h",
      "FOO=1"
    ])
    assert.deepStrictEqual(replaceOrAppendEnv(["PATH=/bin"], ["PATH", "PATH=/y"]), ["PATH=/y"])
  })

  it("replaceOrAppendEnv keeps the last value of a repeated override", () => {
    assert.deepStrictEqual(replaceOrAppendEnv(["A=1"], ["B=1", "B=2", "A=3"]), ["A=3", "B=2"])
  })
})

describe("resolveUser: runc's lookup, as Docker calls it", () => {
  const files = {
    passwd: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    group: "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n"
  }
  it.each([
    ["", 0, 0, [0]],
    ["root", 0, 0, [0]],
    ["app", 1000, 1000, [1000, 2000]],
    ["1000", 1000, 1000, [1000, 2000]],
    ["1234", 1234, 0, [0]],
    ["app:extra", 1000, 2000, [2000]],
    ["app:0", 1000, 0, [0]],
    ["1234:5678", 1234, 5678, [5678]],
    ["nobody", 65534, 65534, [65534]]
  ] as const)("%j", (spec, uid, gid, additionalGids) => {
    assert.deepStrictEqual(Result.getOrThrow(resolveUser(spec, files)), { uid, gid, additionalGids: [...additionalGids] })
  })

  it.each([
    ["ghost", files, "unable to find user ghost"],
    ["app:ghosts", files, "unable to find group ghosts"],
    ["-1", files, "out of range"],
    ["app", {}, "unable to find user app"]
  ] as const)("refuses %j", (spec, input, message) => {
    assert.include(failure(resolveUser(spec, input)), message)
  })

  it("works without passwd and group files for numeric and empty users", () => {
    assert.deepStrictEqual(Result.getOrThrow(resolveUser("", {})), { uid: 0, gid: 0, additionalGids: [0] })
    assert.deepStrictEqual(Result.getOrThrow(resolveUser("5:6", {})), { uid: 5, gid: 6, additionalGids: [6] })
  })
})

describe("addGroups: Docker's GroupAdd, after the user's own groups", () => {
  const group = "root:x:0:\naudio:x:29:\nstaff:x:50:app\n"
  const user = { uid: 1000, gid: 1000, additionalGids: [1000, 50] }
  it("names from /etc/group and numeric ids, each once", () => {
    assert.deepStrictEqual(addGroups(user, ["audio", "1234", "50"], group), Result.succeed({ ...user, additionalGids: [1000, 50, 29, 1234] }))
    assert.deepStrictEqual(addGroups(user, [], undefined), Result.succeed(user))
  })
  it("an unknown name is refused with runc's message; an id out of range too", () => {
    assert.deepStrictEqual(addGroups(user, ["nosuch"], group), Result.fail("Unable to find group nosuch: no matching entries in group file"))
    assert.deepStrictEqual(addGroups(user, ["audio"], undefined), Result.fail("Unable to find group audio: no matching entries in group file"))
    assert.deepStrictEqual(addGroups(user, ["4294967296"], group), Result.fail("group id 4294967296 is out of range"))
  })
})
