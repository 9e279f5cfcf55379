/**
 * Resource and namespace options honoured as dockerd 20.10 honours them, seen
 * from inside the container through the docker CLI, side by side with dockerd on
 * the same containerd when it is installed (test/support/Engines.ts): cgroup
 * limits, ulimits, /dev/shm, sysctls, device nodes, added groups, the host's and
 * another container's namespaces, `--init`; and bad values refused at create
 * with dockerd's message, nothing created.
 */
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import { bothEngines, type Engine, engines, Engines, eventually, ok } from "../support/Engines.ts"
import { FIXTURE_IMAGE } from "../support/FixtureImage.ts"

const API = "/v1.41"
const cgroupV2 = fs.existsSync("/sys/fs/cgroup/cgroup.controllers")

/** Reads the first of `files` that exists, as `key=value`. */
const show = (key: string, ...files: ReadonlyArray<string>) =>
  `echo ${key}=$(cat ${files.map((f) => `${f} 2>/dev/null`).join(" || cat ")})`

/** `docker run --rm ARGS image sh -c SCRIPT`: its output as `key=value` pairs. */
const values = (engine: Engine, args: ReadonlyArray<string>, script: ReadonlyArray<string>) =>
  Effect.map(ok(engine, ["run", "--rm", "--network", "none", ...args, FIXTURE_IMAGE, "sh", "-c", script.join("; ")]), (out) =>
    Object.fromEntries(out.trim().split("\n").map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)])))

/** How many host mounts are a shareable /dev/shm of container `id` (dockerd's and ours both have the id in the path). */
const hostMountsOf = (id: string) =>
  fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => line.includes(id) && line.includes("shm")).length

const countContainers = (engine: Engine) =>
  Effect.map(engine.request("GET", `${API}/containers/json?all=1`), (r) => (JSON.parse(r.body) as ReadonlyArray<unknown>).length)

layer(engines("resources"), { excludeTestServices: true, timeout: 120_000 })("resource and namespace options, beside dockerd", (it) => {
  it.effect("limits, ulimits, /dev/shm, sysctls, devices and groups are what the container sees", () =>
    Effect.gen(function*() {
      const results = yield* bothEngines((engine) =>
        Effect.all({
          limited: values(engine, [
            "--pids-limit", "10",
            "--ulimit", "nofile=100:200",
            "--memory", "20m",
            "--memory-reservation", "10m",
            "--cpus", "0.5",
            "--cpuset-cpus", "0",
            "--shm-size", "10m",
            "--device", "/dev/null:/dev/mynull",
            "--group-add", "1234",
            "--sysctl", "kernel.shmmax=1000000",
            "--sysctl", "net.ipv4.ip_forward=1"
          ], [
            show("pids", "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
            "echo nofile=$(ulimit -n):$(ulimit -Hn)",
            show("memory", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
            show("swap", "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", "/sys/fs/cgroup/memory.swap.max"),
            show("reservation", "/sys/fs/cgroup/memory/memory.soft_limit_in_bytes", "/sys/fs/cgroup/memory.low"),
            `echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max | cut -d' ' -f1)`,
            show("cpuset", "/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus"),
            "echo shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')",
            "echo device=$(stat -c '%F %t,%T' /dev/mynull)",
            "echo groups=$(id -G)",
            "echo shmmax=$(cat /proc/sys/kernel/shmmax)",
            "echo forward=$(cat /proc/sys/net/ipv4/ip_forward)"
          ]),
          quota: values(engine, ["--cpu-quota", "20000", "--cpu-period", "50000"], [
            `echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max)`
          ]),
          defaults: values(engine, [], [
            show("pids", "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
            "echo shm=$(df -k /dev/shm | tail -1 | awk '{print $2}')"
          ])
        }).pipe(Effect.map((seen) => [engine.name, seen] as const)))
      for (const [name, seen] of results) {
        assert.deepStrictEqual(seen.limited, {
          pids: "10",
          nofile: "100:200",
          memory: String(20 * 1024 ** 2),
          // Twice the memory by default, as dockerd; cgroup v2 counts the swap alone.
          swap: String((cgroupV2 ? 1 : 2) * 20 * 1024 ** 2),
          reservation: String(10 * 1024 ** 2),
          cpu: "50000",
          cpuset: "0",
          shm: "10240",
          device: "character special file 1,3",
          groups: "0 1234",
          shmmax: "1000000",
          forward: "1"
        }, name)
        assert.deepStrictEqual(seen.quota, { cpu: "20000 50000" }, name)
        assert.deepStrictEqual(seen.defaults, { pids: "max", shm: "65536" }, name)
      }
    }))

  it.effect("the host's pid and uts namespaces, another container's pid and ipc ones, and docker-init as PID 1", () =>
    Effect.gen(function*() {
      const hostInit = fs.readFileSync("/proc/1/comm", "utf8").trim()
      const results = yield* bothEngines((engine) =>
        Effect.gen(function*() {
          const donorName = `donor-${crypto.randomBytes(4).toString("hex")}`
          const donor = (yield* ok(engine, [
            "run", "-d", "--name", donorName, "--network", "none", "--ipc", "shareable", FIXTURE_IMAGE, "sh", "-c",
            "echo hi > /dev/shm/mark; exec sleep 60"
          ])).trim()
          // The shareable /dev/shm is a tmpfs on the host, under the container's own directory.
          const mountedWhileRunning = hostMountsOf(donor)
          const private_ = (yield* ok(engine, ["run", "-d", "--network", "none", FIXTURE_IMAGE, "sleep", "60"])).trim()
          yield* eventually(`${engine.name}: the donor's mark`, Effect.map(engine.docker(["exec", donor, "sh", "-c", "cat /dev/shm/mark"]), (r) => r.code === 0))
          const donorIpc = (yield* ok(engine, ["exec", donor, "sh", "-c", "readlink /proc/self/ns/ipc"])).trim()
          const joined = yield* values(engine, ["--ipc", `container:${donor}`, "--pid", `container:${donor}`], [
            "echo mark=$(cat /dev/shm/mark)",
            "echo ipc=$(readlink /proc/self/ns/ipc)",
            "echo first=$(cat /proc/1/cmdline | tr '\\0' ' ')"
          ])
          const refused = yield* engine.docker(["run", "--rm", "--network", "none", "--ipc", `container:${private_}`, FIXTURE_IMAGE, "true"])
          const host = yield* values(engine, ["--pid", "host", "--uts", "host"], [
            "echo init=$(cat /proc/1/comm)",
            "echo hostname=$(hostname)"
          ])
          const init = yield* ok(engine, ["run", "--rm", "--network", "none", "--init", FIXTURE_IMAGE, "ps", "-o", "pid,args"])
          const initCreated = (yield* ok(engine, ["create", "--init", FIXTURE_IMAGE, "sleep", "5"])).trim()
          // Shown without the init, as dockerd shows it.
          const initShown = (yield* ok(engine, ["inspect", "-f", "{{.Path}} {{.Args}}", initCreated])).trim()
          // By name, kept by id (adaptSharedNamespaceContainer); a donor that is not running cannot be joined.
          const byName = (yield* ok(engine, ["create", "--ipc", `container:${donorName}`, FIXTURE_IMAGE, "true"])).trim()
          const keptAs = (yield* ok(engine, ["inspect", "-f", "{{.HostConfig.IpcMode}}", byName])).trim()
          yield* ok(engine, ["stop", "-t", "0", donor])
          const notRunning = yield* engine.docker(["start", byName])
          yield* ok(engine, ["rm", "-f", donor, private_, initCreated, byName])
          return {
            name: engine.name,
            donorIpc,
            joined,
            refused,
            host,
            init,
            initShown,
            keptAs: keptAs === `container:${donor}`,
            notRunning,
            mounts: [mountedWhileRunning, hostMountsOf(donor)],
            donor
          }
        }))
      for (const { donor, donorIpc, host, init, initShown, joined, keptAs, mounts, name, notRunning, refused } of results) {
        assert.deepStrictEqual(mounts, [1, 0], `${name}: the donor's shm tmpfs while it runs, and after its removal`)
        assert.isTrue(keptAs, name)
        assert.notStrictEqual(notRunning.code, 0, name)
        assert.include(notRunning.stderr, `can't join IPC of container ${donor}: container ${donor} is not running`, name)
        assert.strictEqual(initShown, "sleep [5]", name)
        assert.deepStrictEqual(joined, { mark: "hi", ipc: donorIpc, first: "sleep 60" }, name)
        assert.notStrictEqual(refused.code, 0, name)
        assert.include(refused.stderr, "non-shareable IPC (hint: use IpcMode:shareable for the donor container)", name)
        assert.deepStrictEqual(host, { init: hostInit, hostname: os.hostname() }, name)
        assert.strictEqual(init.trim().split("\n")[1]?.trim(), "1 /sbin/docker-init -- ps -o pid,args", name)
      }
    }))

  it.effect("inspect shows the fields as dockerd does, its defaults filled in", () =>
    Effect.gen(function*() {
      const keys = [
        "GroupAdd", "IpcMode", "PidMode", "UTSMode", "ShmSize", "Sysctls", "Init", "CpuPeriod", "CpuQuota", "CpusetCpus",
        "CpusetMems", "Devices", "MemoryReservation", "MemorySwap", "NanoCpus", "PidsLimit", "Ulimits"
      ]
      const shown = yield* bothEngines((engine) =>
        Effect.forEach([
          [],
          ["--memory", "20m", "--ulimit", "nofile=1:2", "--init", "--device", "/dev/null:/dev/x", "--sysctl", "kernel.shmmax=1",
            "--pids-limit", "5", "--cpus", "0.5", "--group-add", "1234", "--ipc", "shareable", "--shm-size", "1m"]
        ], (flags) =>
          Effect.gen(function*() {
            const id = (yield* ok(engine, ["create", "--network", "none", ...flags, FIXTURE_IMAGE, "true"])).trim()
            const host = JSON.parse((yield* engine.request("GET", `${API}/containers/${id}/json`)).body).HostConfig
            yield* ok(engine, ["rm", id])
            return Object.fromEntries(keys.flatMap((key) => key in host ? [[key, host[key]]] : []))
          })))
      const [ours, dockerd] = shown
      assert.deepStrictEqual(ours![0], {
        GroupAdd: null, IpcMode: "private", PidMode: "", UTSMode: "", ShmSize: 67108864, CpuPeriod: 0, CpuQuota: 0, CpusetCpus: "",
        CpusetMems: "", Devices: [], MemoryReservation: 0, MemorySwap: 0, NanoCpus: 0, PidsLimit: null, Ulimits: []
      })
      assert.deepInclude(ours![1], {
        GroupAdd: ["1234"], IpcMode: "shareable", ShmSize: 1048576, Sysctls: { "kernel.shmmax": "1" }, Init: true,
        Devices: [{ PathOnHost: "/dev/null", PathInContainer: "/dev/x", CgroupPermissions: "rwm" }], MemorySwap: 41943040,
        NanoCpus: 500000000, PidsLimit: 5, Ulimits: [{ Name: "nofile", Hard: 2, Soft: 1 }]
      })
      if (dockerd !== undefined) assert.deepStrictEqual(ours, dockerd)
    }))

  it.effect("bad values: 400 with dockerd's message, nothing created", () =>
    Effect.gen(function*() {
      const image = FIXTURE_IMAGE
      // dockerd refuses these at create too: the same status and words.
      const asDockerd: ReadonlyArray<[Record<string, unknown>, string]> = [
        [{ HostConfig: { Memory: 1024 } }, "Minimum memory limit allowed is 6MB"],
        [{ HostConfig: { Memory: 20e6, MemorySwap: 10e6 } }, "Minimum memoryswap limit should be larger than memory limit, see usage"],
        [{ HostConfig: { MemorySwap: 10e6 } }, "You should always set the Memory limit when using Memoryswap limit, see usage"],
        [{ HostConfig: { MemoryReservation: 1e6 } }, "Minimum memory reservation allowed is 6MB"],
        [{ HostConfig: { Memory: 20e6, MemoryReservation: 30e6 } }, "Minimum memory limit can not be less than memory reservation limit, see usage"],
        [{ HostConfig: { NanoCpus: 5e8, CpuQuota: 1000 } }, "Conflicting options: Nano CPUs and CPU Quota cannot both be set"],
        [{ HostConfig: { CpuPeriod: 500 } }, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"],
        [{ HostConfig: { CpuQuota: 500 } }, "CPU cfs quota can not be less than 1ms (i.e. 1000)"],
        [{ HostConfig: { CpusetCpus: "abc" } }, "Invalid value abc for cpuset cpus: invalid format: abc"],
        [{ HostConfig: { ShmSize: -1 } }, "SHM size can not be less than 0"],
        [{ Hostname: "foo", HostConfig: { UTSMode: "host" } }, "conflicting options: hostname and the UTS mode"],
        [{ HostConfig: { IpcMode: "container:nonexist" } }, "No such container: nonexist"]
      ]
      // dockerd takes these and fails at the start (or its CLI refuses them): refused before anything is made.
      const atCreate: ReadonlyArray<[Record<string, unknown>, string]> = [
        [{ HostConfig: { Sysctls: { "kernel.hostname": "x" } } }, "sysctl 'kernel.hostname=x' is not allowed"],
        [{ HostConfig: { Sysctls: { "kernel.shmmax": "1" }, IpcMode: "host" } }, "is not allowed in the hosts ipc namespace"],
        [{ HostConfig: { Ulimits: [{ Name: "bogus", Soft: 1, Hard: 1 }] } }, "invalid ulimit type: bogus"],
        [{ HostConfig: { Devices: [{ PathOnHost: "/dev/nonexist", PathInContainer: "/dev/x", CgroupPermissions: "rwm" }] } }, "no such file or directory"],
        [{ HostConfig: { Devices: [{ PathOnHost: "/dev/null", PathInContainer: "/dev/x", CgroupPermissions: "q" }] } }, "bad mode specified: q"],
        [{ HostConfig: { PidMode: "bogus" } }, "invalid PID mode: bogus"],
        [{ HostConfig: { IpcMode: "bogus" } }, "invalid IPC mode: bogus"],
        [{ HostConfig: { UTSMode: "bogus" } }, "invalid UTS mode: bogus"],
        [{ HostConfig: { GroupAdd: ["nosuch"] } }, "Unable to find group nosuch: no matching entries in group file"]
      ]
      const { ours } = yield* Engines
      const before = yield* countContainers(ours)
      const answers = yield* bothEngines((engine) =>
        Effect.forEach(asDockerd, ([body]) =>
          Effect.map(engine.request("POST", `${API}/containers/create`, JSON.stringify({ Image: image, ...body })), (r) => ({
            status: r.status,
            message: JSON.parse(r.body).message as string | undefined
          }))))
      for (const [engineAnswers, i] of answers.map((a, i) => [a, i] as const)) {
        engineAnswers.forEach((answer, j) =>
          assert.deepStrictEqual(answer, { status: 400, message: asDockerd[j]![1] }, `${i === 0 ? "ours" : "dockerd"}: ${JSON.stringify(asDockerd[j]![0])}`)
        )
      }
      yield* Effect.forEach(atCreate, ([body, message]) =>
        Effect.map(ours.request("POST", `${API}/containers/create`, JSON.stringify({ Image: image, ...body })), (r) => {
          assert.strictEqual(r.status, 400, JSON.stringify(body))
          assert.include(JSON.parse(r.body).message, message, JSON.stringify(body))
        }))
      assert.strictEqual(yield* countContainers(ours), before, "nothing was created")
    }))
})
