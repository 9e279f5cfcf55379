import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import {
  type HostFacts,
  joinOptions,
  joinRefusal,
  parseResources,
  parseUintList,
  type Resources
} from "../../../src/daemon/engine/Resources.ts"
import type { HostConfig } from "../../../src/daemon/Model.ts"
import { withoutInit } from "../../../src/domain/OciResources.ts"
import { applyOptions, defaultSpec, type Spec } from "../../../src/domain/OciSpec.ts"

const facts: HostFacts = {
  cpuCount: 2,
  cpus: "0-1",
  mems: "0",
  device: (path) =>
    path === "/dev/null"
      ? Result.succeed({ type: "c", major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 })
      : path === "/etc"
      ? Result.fail("not a device node")
      : Result.fail("no such file or directory"),
  initPath: "/usr/bin/tini-static"
}

const parse = (host: HostConfig, options?: { readonly hostname?: string; readonly network?: "none" | "host"; readonly facts?: HostFacts }) =>
  parseResources(host, { hostname: options?.hostname ?? "", network: options?.network ?? "none", facts: options?.facts ?? facts })

/** The default spec with what `host` asks for. */
const specOf = (host: HostConfig): Spec => {
  const parsed = parse(host)
  assert.isTrue(Result.isSuccess(parsed), JSON.stringify(parsed))
  return applyOptions(defaultSpec({ namespace: "ns", id: "c1" }), (parsed as Result.Success<Resources, string>).success.spec)
}

const refused = (host: HostConfig, message: string, options?: Parameters<typeof parse>[1]) => {
  const parsed = parse(host, options)
  assert.deepStrictEqual(Result.isFailure(parsed) ? parsed.failure : "accepted", message, JSON.stringify(host))
}

describe("Resources", () => {
  it("cgroup limits as dockerd's getCPUResources, getMemoryResources and getPidsLimit", () => {
    const spec = specOf({
      Memory: 20 * 1024 ** 2,
      MemoryReservation: 10 * 1024 ** 2,
      NanoCpus: 500_000_000,
      CpusetCpus: "1",
      CpusetMems: "0",
      PidsLimit: 10
    })
    assert.deepStrictEqual(spec.linux.resources?.cpu, { period: 100000, quota: 50000, cpus: "1", mems: "0" })
    // Swap defaults to twice the memory (adaptContainerSettings).
    assert.deepStrictEqual(spec.linux.resources?.memory, { limit: 20 * 1024 ** 2, swap: 40 * 1024 ** 2, reservation: 10 * 1024 ** 2 })
    assert.deepStrictEqual(spec.linux.resources?.pids, { limit: 10 })
    assert.deepStrictEqual(specOf({ CpuQuota: 20000, CpuPeriod: 50000 }).linux.resources?.cpu, { quota: 20000, period: 50000 })
    // -1: unlimited, no swap limit at all (getMemoryResources sets only a positive one).
    assert.deepStrictEqual(specOf({ Memory: 20 * 1024 ** 2, MemorySwap: -1 }).linux.resources?.memory, { limit: 20 * 1024 ** 2 })
    // 0 and below: no limit.
    assert.isUndefined(specOf({ PidsLimit: -1 }).linux.resources?.pids)
    assert.isUndefined(specOf({ PidsLimit: 0 }).linux.resources?.pids)
  })

  it("memory and CPU values refused with dockerd's messages", () => {
    refused({ Memory: 1024 }, "Minimum memory limit allowed is 6MB")
    refused({ Memory: 20e6, MemorySwap: 10e6 }, "Minimum memoryswap limit should be larger than memory limit, see usage")
    refused({ MemorySwap: 10e6 }, "You should always set the Memory limit when using Memoryswap limit, see usage")
    refused({ MemoryReservation: 1e6 }, "Minimum memory reservation allowed is 6MB")
    refused({ Memory: 20e6, MemoryReservation: 30e6 }, "Minimum memory limit can not be less than memory reservation limit, see usage")
    refused({ NanoCpus: 1e9, CpuQuota: 1000 }, "Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    refused({ NanoCpus: 1e9, CpuPeriod: 1000 }, "Conflicting options: Nano CPUs and CPU Period cannot both be set")
    refused({ NanoCpus: 3e9 }, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available")
    refused({ NanoCpus: -1 }, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available")
    refused({ CpuPeriod: 500 }, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    refused({ CpuPeriod: 2_000_000 }, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    refused({ CpuQuota: 500 }, "CPU cfs quota can not be less than 1ms (i.e. 1000)")
    refused({ CpusetCpus: "7" }, "Requested CPUs are not available - requested 7, available: 0-1")
    refused({ CpusetCpus: "abc" }, "Invalid value abc for cpuset cpus: invalid format: abc")
    refused({ CpusetMems: "3" }, "Requested memory nodes are not available - requested 3, available: 0")
  })

  it("parseUintList reads the kernel's lists", () => {
    assert.deepStrictEqual([...parseUintList("0-2,5")!], [0, 1, 2, 5])
    assert.deepStrictEqual([...parseUintList("")!], [])
    assert.isUndefined(parseUintList("2-1"))
    assert.isUndefined(parseUintList("1,,2"))
    assert.isUndefined(parseUintList("x"))
  })

  it("ulimits replace the default of their kind; bad ones refused as the CLI does", () => {
    const spec = specOf({ Ulimits: [{ Name: "nofile", Soft: 100, Hard: 200 }, { Name: "nproc", Soft: 5, Hard: 5 }] })
    assert.deepStrictEqual(spec.process.rlimits, [
      { type: "RLIMIT_NOFILE", soft: 100, hard: 200 },
      { type: "RLIMIT_NPROC", soft: 5, hard: 5 }
    ])
    refused({ Ulimits: [{ Name: "bogus", Soft: 1, Hard: 1 }] }, "Ulimits (--ulimit): invalid ulimit type: bogus")
    refused(
      { Ulimits: [{ Name: "nofile", Soft: 200, Hard: 100 }] },
      "Ulimits (--ulimit) nofile: ulimit soft limit must be less than or equal to hard limit: 200 > 100"
    )
  })

  it("devices: the node and its cgroup rule; a missing or non-device path, a bad mode or a relative path refused", () => {
    const spec = specOf({ Devices: [{ PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", CgroupPermissions: "rw" }] })
    assert.deepStrictEqual(spec.linux.devices, [{ path: "/dev/mynull", type: "c", major: 1, minor: 3, fileMode: 0o666, uid: 0, gid: 0 }])
    assert.deepStrictEqual(spec.linux.resources?.devices?.at(-1), { allow: true, type: "c", major: 1, minor: 3, access: "rw" })
    // The container path defaults to the host's, the access to rwm.
    assert.deepStrictEqual(specOf({ Devices: [{ PathOnHost: "/dev/null" }] }).linux.devices?.[0]?.path, "/dev/null")
    refused(
      { Devices: [{ PathOnHost: "/dev/nonexist" }] },
      "error gathering device information while adding custom device \"/dev/nonexist\": no such file or directory"
    )
    refused({ Devices: [{ PathOnHost: "/etc" }] }, "error gathering device information while adding custom device \"/etc\": not a device node")
    refused({ Devices: [{ PathOnHost: "/dev/null", CgroupPermissions: "q" }] }, "Devices (--device) /dev/null: bad mode specified: q")
    refused({ Devices: [{ PathOnHost: "/dev/null", CgroupPermissions: "rr" }] }, "Devices (--device) /dev/null: bad mode specified: rr")
    refused({ Devices: [{ PathOnHost: "/dev/null", PathInContainer: "rel" }] }, "Devices (--device) /dev/null: rel is not an absolute path")
  })

  it("sysctls: namespaced ones only, and not in a namespace shared with the host", () => {
    assert.deepStrictEqual(
      specOf({ Sysctls: { "kernel.shmmax": "1000000", "net.ipv4.ip_forward": "1", "fs.mqueue.msg_max": "10" } }).linux.sysctl,
      { "kernel.shmmax": "1000000", "net.ipv4.ip_forward": "1", "fs.mqueue.msg_max": "10" }
    )
    refused({ Sysctls: { "kernel.hostname": "x" } }, "Sysctls (--sysctl): sysctl 'kernel.hostname=x' is not allowed")
    refused({ Sysctls: { "vm.swappiness": "1" } }, "Sysctls (--sysctl): sysctl 'vm.swappiness=1' is not allowed")
    refused(
      { Sysctls: { "net.ipv4.ip_forward": "1" } },
      "Sysctls (--sysctl): sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace",
      { network: "host" }
    )
    refused(
      { Sysctls: { "kernel.shmmax": "1" }, IpcMode: "host" },
      "Sysctls (--sysctl): sysctl \"kernel.shmmax\" is not allowed in the hosts ipc namespace"
    )
  })

  it("/dev/shm: its size, the host's with --ipc host, none with --ipc none", () => {
    const shm = (spec: Spec) => spec.mounts.filter((m) => m.destination === "/dev/shm")
    assert.deepStrictEqual(shm(specOf({}))[0]?.options?.filter((o) => o.startsWith("size=")), ["size=65536k"])
    assert.deepStrictEqual(shm(specOf({ ShmSize: 10 * 1024 ** 2 }))[0]?.options?.filter((o) => o.startsWith("size=")), ["size=10485760"])
    const host = specOf({ IpcMode: "host" })
    assert.deepStrictEqual(shm(host), [{ destination: "/dev/shm", type: "bind", source: "/dev/shm", options: ["rbind", "rprivate"] }])
    assert.isFalse(host.linux.namespaces.some((ns) => ns.type === "ipc"))
    assert.deepStrictEqual(shm(specOf({ IpcMode: "none" })), [])
    refused({ ShmSize: -1 }, "SHM size can not be less than 0")
  })

  it("pid, ipc and uts modes: host drops the namespace, container:<ref> is a join at start, anything else refused", () => {
    const pidHost = specOf({ PidMode: "host" })
    assert.deepStrictEqual(pidHost.linux.namespaces.map((ns) => ns.type), ["ipc", "uts", "mount", "network"])
    const utsHost = specOf({ UTSMode: "host" })
    assert.isUndefined(utsHost.hostname)
    assert.isFalse(utsHost.linux.namespaces.some((ns) => ns.type === "uts"))
    const joined = parse({ PidMode: "container:donor", IpcMode: "container:other" })
    assert.deepStrictEqual(Result.getOrUndefined(Result.map(joined, (r) => r.joins)), [
      { type: "pid", container: "donor" },
      { type: "ipc", container: "other" }
    ])
    refused({ PidMode: "bogus" }, "invalid PID mode: bogus")
    refused({ PidMode: "container:" }, "invalid PID mode: container:")
    refused({ IpcMode: "bogus" }, "invalid IPC mode: bogus")
    refused({ UTSMode: "container:x" }, "invalid UTS mode: container:x")
    refused({ UTSMode: "host" }, "conflicting options: hostname and the UTS mode", { hostname: "foo" })
  })

  it("joins: the donor's /proc entries; refused as dockerd when it is not running or not shareable", () => {
    const spec = applyOptions(defaultSpec({ namespace: "ns", id: "c1" }), joinOptions([
      { type: "pid", pid: 42, shm: "/data/c/shm" },
      { type: "ipc", pid: 42, shm: "/data/c/shm" }
    ]))
    assert.deepStrictEqual(spec.linux.namespaces.filter((ns) => ns.path !== undefined), [
      { type: "pid", path: "/proc/42/ns/pid" },
      { type: "ipc", path: "/proc/42/ns/ipc" }
    ])
    assert.deepStrictEqual(spec.mounts.filter((m) => m.destination === "/dev/shm").map((m) => m.source), ["/data/c/shm"])
    const ipc = { type: "ipc", container: "d" } as const
    assert.strictEqual(joinRefusal(ipc, "d", { running: false, ipcMode: "shareable" }), "can't join IPC of container d: container d is not running")
    assert.strictEqual(
      joinRefusal(ipc, "d", { running: true, ipcMode: "private" }),
      "can't join IPC of container d: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"
    )
    assert.isUndefined(joinRefusal(ipc, "d", { running: true, ipcMode: "shareable" }))
    assert.strictEqual(joinRefusal({ type: "pid", container: "d" }, "d", { running: false, ipcMode: "" }), "container d is not running")
    assert.isUndefined(joinRefusal({ type: "pid", container: "d" }, "d", { running: true, ipcMode: "" }))
  })

  it("init: docker-init bound read-only at /sbin/docker-init, running the command; refused when the host has none", () => {
    const spec = applyOptions(
      applyOptions(defaultSpec({ namespace: "ns", id: "c1" }), [(s) => ({ ...s, process: { ...s.process, args: ["ps"] } })]),
      (parse({ Init: true }) as Result.Success<Resources, string>).success.spec
    )
    assert.deepStrictEqual(spec.process.args, ["/sbin/docker-init", "--", "ps"])
    assert.deepStrictEqual(withoutInit(spec.process.args), ["ps"])
    assert.deepStrictEqual(withoutInit(["ps"]), ["ps"])
    assert.deepStrictEqual(spec.mounts.at(-1), {
      destination: "/sbin/docker-init",
      type: "bind",
      source: "/usr/bin/tini-static",
      options: ["bind", "ro"]
    })
    refused(
      { Init: true },
      "Init (--init) is not supported here: no docker-init (or tini-static) was found on this host",
      { facts: { ...facts, initPath: undefined } }
    )
  })

  it("--ipc shareable: a host tmpfs of the asked size (64 MiB by default) instead of the container's own", () => {
    assert.strictEqual(Result.getOrUndefined(Result.map(parse({ IpcMode: "shareable" }), (r) => r.shareableShm)), 64 * 1024 * 1024)
    assert.strictEqual(Result.getOrUndefined(Result.map(parse({ IpcMode: "shareable", ShmSize: 1024 }), (r) => r.shareableShm)), 1024)
    assert.isUndefined(Result.getOrUndefined(Result.map(parse({ ShmSize: 1024 }), (r) => r.shareableShm)))
  })

  it("group names are carried to the library, which resolves them in the image", () => {
    assert.deepStrictEqual(Result.getOrUndefined(Result.map(parse({ GroupAdd: ["audio", "1234"] }), (r) => r.groupAdd)), ["audio", "1234"])
  })
})
