import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import {
  argv,
  checkLogConfig,
  checkOomScoreAdj,
  logConfigOf,
  parseBind,
  parseNetwork,
  parsePolicy,
  parseSecurityOpt,
  parseSize,
  parseTmpfs
} from "../../../src/daemon/engine/HostConfig.ts"
import type { StoredContainer } from "../../../src/daemon/Model.ts"

const failed = (result: Result.Result<unknown, string>, includes: string) =>
  assert.isTrue(Result.isFailure(result) && result.failure.includes(includes), `${JSON.stringify(result)} should fail with ${includes}`)

describe("HostConfig", () => {
  it("parsePolicy", () => {
    assert.deepStrictEqual(parsePolicy(undefined), Result.succeed({ name: "no", max: 0 }))
    assert.deepStrictEqual(parsePolicy({ Name: "" }), Result.succeed({ name: "no", max: 0 }))
    assert.deepStrictEqual(parsePolicy({ Name: "always" }), Result.succeed({ name: "always", max: 0 }))
    assert.deepStrictEqual(parsePolicy({ Name: "on-failure", MaximumRetryCount: 3 }), Result.succeed({ name: "on-failure", max: 3 }))
    failed(parsePolicy({ Name: "sometimes" }), "invalid restart policy 'sometimes'")
    failed(parsePolicy({ Name: "always", MaximumRetryCount: 2 }), "only be used with 'on-failure'")
    failed(parsePolicy({ Name: "on-failure", MaximumRetryCount: -1 }), "cannot be negative")
  })

  it("parseSecurityOpt: no-new-privileges as dockerd reads it (off unless asked); dockerd's messages for malformed options", () => {
    const nnp = (options: ReadonlyArray<string> | null | undefined) => Result.map(parseSecurityOpt(options), (s) => s.noNewPrivileges)
    assert.deepStrictEqual(nnp(undefined), Result.succeed(false))
    assert.deepStrictEqual(nnp([]), Result.succeed(false))
    for (const on of ["no-new-privileges", "no-new-privileges:true", "no-new-privileges=true", "no-new-privileges=1", "no-new-privileges:TRUE"]) {
      assert.deepStrictEqual(nnp([on]), Result.succeed(true), on)
    }
    assert.deepStrictEqual(nnp(["no-new-privileges=false"]), Result.succeed(false))
    assert.deepStrictEqual(nnp(["no-new-privileges", "no-new-privileges:false"]), Result.succeed(false), "the last one wins")
    assert.deepStrictEqual(parseSecurityOpt(["nnp"]), Result.fail("invalid --security-opt 1: \"nnp\""))
    assert.deepStrictEqual(parseSecurityOpt(["no-new-privileges=maybe"]), Result.fail("invalid --security-opt 2: \"no-new-privileges=maybe\""))
    assert.deepStrictEqual(parseSecurityOpt(["no-new-privileges="]), Result.fail("invalid --security-opt 2: \"no-new-privileges=\""))
    assert.deepStrictEqual(parseSecurityOpt(["foo:bar"]), Result.fail("invalid --security-opt 2: \"foo:bar\""))
    // The CLI turns systempaths=unconfined into empty MaskedPaths and ReadonlyPaths; dockerd refuses it here.
    assert.deepStrictEqual(parseSecurityOpt(["systempaths=unconfined"]), Result.fail("invalid --security-opt 2: \"systempaths=unconfined\""))
    // No AppArmor profile or SELinux label is applied: asking for none is honoured, any other is refused.
    for (const none of ["label=disable", "label:disable", "disable", "apparmor=unconfined", "apparmor:unconfined"]) {
      assert.isTrue(Result.isSuccess(parseSecurityOpt([none])), none)
    }
    for (const refused of ["label=user:system_u", "label=level:s0", "apparmor=docker-default"]) {
      failed(parseSecurityOpt(["no-new-privileges", refused]), `SecurityOpt ${JSON.stringify(refused)} (--security-opt) is not supported`)
    }
  })

  it("parseSecurityOpt: seccomp=unconfined, builtin (Docker's default), or the profile's JSON as the CLI sends it", () => {
    const seccomp = (options: ReadonlyArray<string>) => Result.map(parseSecurityOpt(options), (s) => s.seccomp)
    assert.deepStrictEqual(seccomp([]), Result.succeed({ _tag: "Default" }))
    assert.deepStrictEqual(seccomp(["seccomp=builtin"]), Result.succeed({ _tag: "Default" }))
    assert.deepStrictEqual(seccomp(["seccomp=unconfined"]), Result.succeed({ _tag: "Unconfined" }))
    assert.deepStrictEqual(seccomp(["seccomp:unconfined"]), Result.succeed({ _tag: "Unconfined" }))
    assert.deepStrictEqual(seccomp(["seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}"]), Result.succeed({ _tag: "Profile", json: "{\"defaultAction\":\"SCMP_ACT_ALLOW\"}" }))
  })

  it("checkOomScoreAdj: -1000 to 1000, dockerd's message outside", () => {
    assert.deepStrictEqual(checkOomScoreAdj(undefined), Result.succeed(0))
    assert.deepStrictEqual(checkOomScoreAdj(null), Result.succeed(0))
    assert.deepStrictEqual(checkOomScoreAdj(-1000), Result.succeed(-1000))
    assert.deepStrictEqual(checkOomScoreAdj(1000), Result.succeed(1000))
    assert.deepStrictEqual(checkOomScoreAdj(1001), Result.fail("Invalid value 1001, range for oom score adj is [-1000, 1000]"))
    assert.deepStrictEqual(checkOomScoreAdj(-1001), Result.fail("Invalid value -1001, range for oom score adj is [-1000, 1000]"))
  })

  it("parseSize", () => {
    const cases: Array<[string | undefined, number | undefined]> = [
      ["512", 512],
      ["1b", 1],
      ["64k", 65536],
      ["10m", 10 * 1024 ** 2],
      ["1G", 1024 ** 3],
      ["", undefined],
      [undefined, undefined],
      ["10mb", undefined],
      ["-1", undefined],
      ["1.5m", undefined]
    ]
    for (const [input, expected] of cases) assert.strictEqual(parseSize(input), expected, String(input))
  })

  it("parseTmpfs", () => {
    assert.deepStrictEqual(parseTmpfs("/run", ""), Result.succeed({ type: "tmpfs", destination: "/run", size: undefined, mode: undefined }))
    assert.deepStrictEqual(
      parseTmpfs("/run", "rw,noexec,size=64m,mode=1777"),
      Result.succeed({ type: "tmpfs", destination: "/run", size: 64 * 1024 ** 2, mode: 0o1777, flags: ["rw", "noexec"] })
    )
    // The owner, as Docker hands it to the kernel; flags are kept for the mount, in order.
    assert.deepStrictEqual(
      parseTmpfs("/t", "uid=1000,gid=0,ro,exec,uid=4294967294"),
      Result.succeed({ type: "tmpfs", destination: "/t", size: undefined, mode: undefined, uid: 4294967294, gid: 0, flags: ["ro", "exec"] })
    )
    failed(parseTmpfs("run", ""), "must be absolute")
    failed(parseTmpfs("/run", "size=lots"), "invalid tmpfs size")
    failed(parseTmpfs("/run", "mode=999"), "invalid tmpfs mode")
    for (const id of ["uid=abc", "uid=-1", "gid=4294967295", "uid=", "gid=1.5"]) failed(parseTmpfs("/run", id), `invalid tmpfs ${id.slice(0, 3)}`)
    failed(parseTmpfs("/run", "nr_inodes=5"), "invalid tmpfs option")
    failed(parseTmpfs("/run", "constructor"), "invalid tmpfs option")
    // dockerd's words for a mount over the root, however the path is spelled.
    for (const root of ["/", "//", "/.", "/tmp/.."]) failed(parseTmpfs(root, ""), "invalid specification: destination can't be '/'")
  })

  it("parseBind", () => {
    assert.deepStrictEqual(parseBind("/a:/b"), Result.succeed({ type: "bind", source: "/a", destination: "/b", readonly: false }))
    assert.deepStrictEqual(parseBind("/a:/b:ro,rslave"), Result.succeed({ type: "bind", source: "/a", destination: "/b", readonly: true }))
    failed(parseBind("/a"), "invalid volume specification")
    failed(parseBind("/a:/b:ro:x"), "invalid volume specification")
    assert.deepStrictEqual(
      parseBind("data:/data:ro,nocopy"),
      Result.succeed({ type: "volume", name: "data", destination: "/data", readonly: true, mode: "ro,nocopy", copy: false })
    )
    failed(parseBind(":/data"), "invalid volume specification")
    failed(parseBind("/a:b"), "container path must be absolute")
    failed(parseBind("/a:/b:rw,nocopy"), "invalid mode")
    for (const root of ["/", "//", "/.", "/a/.."]) {
      assert.deepStrictEqual(
        parseBind(`/tmp:${root}`),
        Result.fail(`invalid volume specification: '/tmp:${root}': invalid mount config for type "bind": invalid specification: destination can't be '/'`)
      )
    }
  })

  it("parseNetwork: none, host, Docker's default bridge, a user network, another container's namespace", () => {
    const cases: Array<[string | null | undefined, Result.Result<unknown, string>]> = [
      [undefined, Result.succeed({ _tag: "Bridge" })],
      [null, Result.succeed({ _tag: "Bridge" })],
      ["default", Result.succeed({ _tag: "Bridge" })],
      ["bridge", Result.succeed({ _tag: "Bridge" })],
      ["none", Result.succeed({ _tag: "None" })],
      ["host", Result.succeed({ _tag: "Host" })],
      ["mynet", Result.succeed({ _tag: "Network", ref: "mynet" })],
      ["container:web", Result.succeed({ _tag: "Container", ref: "web" })]
    ]
    for (const [input, expected] of cases) assert.deepStrictEqual(parseNetwork(input), expected, String(input))
    failed(parseNetwork("container:"), "invalid container format")
  })

  it("checkLogConfig and logConfigOf", () => {
    assert.isTrue(Result.isSuccess(checkLogConfig(undefined)))
    assert.isTrue(Result.isSuccess(checkLogConfig({ Type: "json-file", Config: { "max-size": "10m", "max-file": "3" } })))
    failed(checkLogConfig({ Type: "syslog" }), "logging driver \"syslog\" is not supported")
    failed(checkLogConfig({ Config: { "max-size": "0" } }), "invalid log option max-size")
    failed(checkLogConfig({ Config: { "max-file": "0" } }), "invalid log option max-file")
    const stored = (config: Record<string, string> | undefined): StoredContainer => ({
      Name: "/x",
      Created: "",
      Image: "i",
      ImageId: "sha256:0",
      Config: {},
      HostConfig: config === undefined ? {} : { LogConfig: { Config: config } }
    })
    assert.deepStrictEqual(logConfigOf(stored(undefined)), { maxFiles: 1 })
    assert.deepStrictEqual(logConfigOf(stored({ "max-size": "1k", "max-file": "2" })), { maxSize: 1024, maxFiles: 2 })
  })

  it("argv: a string is one argument", () => {
    assert.deepStrictEqual(argv("echo hi"), ["echo hi"])
    assert.deepStrictEqual(argv(["a", "b"]), ["a", "b"])
    assert.strictEqual(argv(null), undefined)
    assert.strictEqual(argv(undefined), undefined)
  })
})
