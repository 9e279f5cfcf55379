/**
 * The `Networks` service over the CNI plugins of this host: definitions as
 * conflists, attachments as pinned netns + loopback + an ADD per network, each
 * recorded before its ADD and released by DEL in reverse with what was
 * recorded, before the netns goes. One container's ADDs and DELs are ordered
 * by a lock of its own (an `RcMap` of semaphores, so nothing global is held
 * while plugins run); definitions change under one lock, off the hot path.
 *
 * At start the definitions are reloaded (their iptables rules reinstalled,
 * idempotently) and the records too: those are live but owned by nobody until
 * `adopt` takes them into a scope or `sweep` releases them.
 */
import { type Duration, Effect, FiberSet, Option, PubSub, RcMap, Schedule, Semaphore, Stream } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { alreadyExists, type ContainerdError, failedPrecondition, invalidArgument, notFound } from "../../domain/ContainerdError.ts"
import type { CniError } from "../../domain/CniResult.ts"
import * as Cni from "../../internal/Cni.ts"
import { commandFailure, runCommand } from "../../internal/Command.ts"
import { compositeKey } from "../../internal/Key.ts"
import { retryForever } from "../../internal/Retry.ts"
import * as Iptables from "../../internal/Iptables.ts"
import * as Netns from "../../internal/Netns.ts"
import type {
  AttachmentChange,
  AttachOptions,
  NetworkDefinition,
  NetworkRequest,
  NetworksShape,
  PortMapping
} from "../Networks.ts"
import * as Definitions from "./Definitions.ts"
import { makePortAllocator } from "./Ports.ts"
import * as Records from "./Records.ts"

/** Where the layer finds plugins and keeps its state. */
export interface NetworksOptions {
  /** Where plugins are looked for, in order; `["/usr/lib/cni"]` (Debian's containernetworking-plugins) by default. */
  readonly pluginDirs?: ReadonlyArray<string> | undefined
  /** The conflists and `attachments/` records (under a data directory: they must survive restarts). */
  readonly confDir: string
  /** Where netns are pinned (`<runRoot>/netns/<namespace>@<id>`); a tmpfs is best, pins die with a reboot. */
  readonly runRoot: string
  /** host-local's address files; `<confDir>/ipam` by default. */
  readonly ipamDir?: string | undefined
  /** The deadline of one plugin exec; 30 s by default. */
  readonly pluginTimeout?: Duration.Input | undefined
}

interface Defined {
  readonly checked: Definitions.CheckedNetwork
  readonly list: Cni.ConfList
}

interface Live {
  record: Records.AttachmentRecord
  owned: boolean
}

interface NetworkAddFailure {
  readonly error: ContainerdError
  readonly prevResult: Cni.RawResult | undefined
}

/** The plugins every attachment runs. */
const REQUIRED_PLUGINS = ["loopback", "bridge", "host-local", "portmap"] as const

/** DEL again after a failure: 50 ms doubling, four times (750 ms in all), before the failure is reported. */
const delRetry = Schedule.exponential("50 millis")

/** A plugin's failure as the library reports it; host-local refusing a requested address is dockerd's "Address already in use". */
const cniFailure = (method: string) => (error: CniError): ContainerdError =>
  /requested IP address \S+ is not available/.test(error.msg)
    ? alreadyExists(method, `Address already in use (${error.msg})`)
    : commandFailure(method, error.message, error)

const loopbackList: Cni.ConfList = { cniVersion: Cni.CNI_VERSION, name: "loopback", plugins: [{ type: "loopback" }] }

/** Builds the service; the returned effect needs the layer's scope. */
export const makeNetworks = Effect.fnUntraced(function*(options: NetworksOptions) {
  const cni: Cni.CniOptions = { pluginDirs: options.pluginDirs ?? ["/usr/lib/cni"], timeout: options.pluginTimeout ?? "30 seconds" }
  const confDir = options.confDir
  const ipamDir = options.ipamDir ?? path.join(confDir, "ipam")
  const netnsDir = path.join(options.runRoot, "netns")

  yield* Effect.forEach(REQUIRED_PLUGINS, (plugin) => Cni.checkVersion(cni, plugin), { concurrency: "unbounded", discard: true }).pipe(
    Effect.mapError((error) =>
      failedPrecondition("Networks.layer", `${error.message} (plugin directories: ${cni.pluginDirs.join(", ")}; Debian: apt-get install containernetworking-plugins)`)
    )
  )
  yield* Effect.try({
    try: () => [confDir, path.join(confDir, "attachments"), ipamDir, netnsDir].forEach((dir) => fs.mkdirSync(dir, { recursive: true })),
    catch: (cause) => commandFailure("Networks.layer", `could not create ${confDir}`, cause)
  })
  yield* Iptables.ensureChains

  const defined = new Map<string, Defined>()
  const live = new Map<string, Live>()
  const ports = makePortAllocator()
  const changes = yield* PubSub.unbounded<AttachmentChange>()
  const definitionLock = Semaphore.makeUnsafe(1)
  const locks = yield* RcMap.make({ lookup: (_key: string) => Semaphore.make(1) })
  const keyOf = (namespace: string, containerId: string) => compositeKey(namespace, containerId)
  // Once it holds the lock a change runs to its end (each plugin exec has a deadline): interrupted
  // half-way, it would leave an attachment whose record no longer says what is there.
  const withKey = (key: string) => <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
    Effect.scoped(Effect.flatMap(RcMap.get(locks, key), (lock) => lock.withPermits(1)(Effect.uninterruptible(effect))))

  // '@' is in neither a namespace nor an id (containerd's identifier rule), so no two containers share a name.
  const netnsPath = (namespace: string, containerId: string) => path.join(netnsDir, `${namespace}@${containerId}`)
  // Releases that failed, tried again until they succeed (see `releaseLater`).
  const retries = yield* FiberSet.make()

  // Reload what a previous run defined and attached.
  for (const definition of yield* Definitions.loadDefinitions(confDir)) {
    const checked = yield* Definitions.checkDefinition(definition, [...defined.values()].map((d) => d.checked.definition)).pipe(
      Effect.tap(() => Iptables.install({ bridge: definition.bridge, subnet: definition.subnet, internal: definition.internal ?? false })),
      Effect.option
    )
    if (Option.isSome(checked)) {
      defined.set(definition.name, { checked: checked.value, list: Definitions.conflist(checked.value, ipamDir) })
    } else yield* Effect.logWarning(`Networks: could not reload network ${definition.name}; left as it is`)
  }
  for (const record of yield* Records.loadRecords(confDir)) {
    const key = keyOf(record.namespace, record.containerId)
    live.set(key, { record, owned: false })
    ports.restore(key, record.ports)
  }

  // ---- definitions -------------------------------------------------------------------------

  const rulesOf = (definition: NetworkDefinition): Iptables.NetworkRules => ({
    bridge: definition.bridge,
    subnet: definition.subnet,
    internal: definition.internal ?? false
  })

  const define = Effect.fn("Networks.define")(function*(definition: NetworkDefinition) {
    const existing = defined.get(definition.name)
    const others = [...defined.values()].map((d) => d.checked.definition)
    // Under a taken name only the same network again is accepted (dockerd checks the name first).
    const checked = existing === undefined
      ? yield* Definitions.checkDefinition(definition, others)
      : yield* Definitions.checkDefinition(definition, others).pipe(
        Effect.filterOrFail(
          (again) => JSON.stringify(again.definition) === JSON.stringify(existing.checked.definition),
          () => undefined
        ),
        Effect.mapError(() => alreadyExists("Networks.define", `network with name ${definition.name} already exists`))
      )
    if (checked.definition.firewall) {
      yield* Cni.checkVersion(cni, "firewall").pipe(Effect.mapError((error) => invalidArgument("Networks.define", error.message)))
    }
    const list = Definitions.conflist(checked, ipamDir)
    const file = Definitions.conflistPath(confDir, definition.name)
    yield* Definitions.writeAtomic(file, JSON.stringify(list, null, 2))
    yield* Iptables.install(rulesOf(checked.definition)).pipe(
      Effect.tapError(() => existing === undefined ? Effect.sync(() => fs.rmSync(file, { force: true })) : Effect.void)
    )
    defined.set(definition.name, { checked, list })
  }, (effect) => definitionLock.withPermits(1)(effect))

  const usersOf = (name: string) =>
    [...live.values()].filter((entry) => entry.record.networks.some((network) => network.network === name))

  const remove = Effect.fn("Networks.remove")(function*(name: string) {
    const existing = defined.get(name)
    if (existing === undefined) return yield* Effect.fail(notFound("Networks.remove", `network ${name} not found`))
    const users = usersOf(name)
    if (users.length > 0) {
      return yield* Effect.fail(
        failedPrecondition(
          "Networks.remove",
          `error while removing network: network ${name} has active endpoints (${users.map((u) => u.record.containerId).join(", ")})`
        )
      )
    }
    // Gone from the definitions in the step that found it unused, so no attach starts on it meanwhile;
    // back if its rules or bridge could not be removed.
    defined.delete(name)
    const { bridge } = existing.checked.definition
    yield* Iptables.uninstall(bridge).pipe(
      Effect.andThen(runCommand("Networks.remove", "ip", ["link", "del", bridge]).pipe(
        Effect.catch((error) => error.message.includes("Cannot find device") ? Effect.void : Effect.fail(error))
      )),
      Effect.tapError(() => Effect.sync(() => void defined.set(name, existing)))
    )
    yield* Effect.sync(() => {
      fs.rmSync(Definitions.conflistPath(confDir, name), { force: true })
      fs.rmSync(path.join(ipamDir, name), { recursive: true, force: true })
    })
  }, (effect) => definitionLock.withPermits(1)(effect))

  // ---- attachments -------------------------------------------------------------------------

  const publish = (change: AttachmentChange) => PubSub.publish(changes, change)

  /** DELs one recorded network (reverse plugin order, cached result), retried before the failure is reported. */
  const delNetwork = (record: Records.AttachmentRecord, network: Records.RecordedNetwork, prevResult?: Cni.RawResult) =>
    Cni.delList(cni, Records.recordedList(network), Records.recordedInvocation(record, network), prevResult ?? network.result ?? undefined)
      .pipe(Effect.retry({ schedule: delRetry, times: 4 }), Effect.mapError(cniFailure("Networks.detach")))

  /**
   * Releases a record: every network DELed in reverse (all attempted; the
   * first failure returned, record kept for another try), then the netns,
   * ports and the record. `count` limits it to the networks ADD was begun for.
   */
  const release = (key: string, record: Records.AttachmentRecord, count = record.networks.length, partial?: Cni.RawResult) =>
    Effect.gen(function*() {
      let first: ContainerdError | undefined
      for (let i = count - 1; i >= 0; i--) {
        const network = record.networks[i]!
        const outcome = yield* Effect.result(delNetwork(record, network, i === count - 1 ? partial : undefined))
        if (outcome._tag === "Failure") first ??= outcome.failure
      }
      if (first !== undefined) return yield* first
      // loopback keeps nothing outside the netns: no DEL for it (the netns goes now).
      yield* Netns.remove(record.netns)
      ports.release(key)
      yield* Records.dropRecord(confDir, record)
      live.delete(key)
    })

  const checkRequests = (method: string, options: AttachOptions) =>
    Definitions.checkAttach(method, (name) => defined.get(name)?.checked, options)

  const recordedNetwork = (
    request: NetworkRequest,
    ifname: string,
    mappings: ReadonlyArray<PortMapping>
  ): Records.RecordedNetwork => {
    const network = defined.get(request.network)!
    const args = [
      "IgnoreUnknown=1",
      ...(request.ip === undefined ? [] : [`IP=${request.ip}`]),
      ...(request.mac === undefined ? [] : [`MAC=${request.mac}`])
    ].join(";")
    return {
      network: request.network,
      ifname,
      conflist: JSON.stringify(Definitions.pluginsFor(network.list, mappings.length > 0)),
      args,
      capabilityArgs: mappings.length === 0 ? {} : {
        portMappings: mappings.map((port) => ({
          hostPort: port.hostPort,
          containerPort: port.containerPort,
          protocol: port.protocol,
          ...(port.hostIp === undefined || port.hostIp === "0.0.0.0" ? {} : { hostIP: port.hostIp })
        }))
      },
      result: null
    }
  }

  /**
   * ADDs `record.networks[index]`, writing its result into the record. A
   * failure carries the result of the plugins before the failing one (what
   * DEL is given to undo them).
   */
  const addNetwork = (entry: Live, index: number) =>
    Effect.gen(function*() {
      const network = entry.record.networks[index]!
      const result = yield* Cni.addList(cni, Records.recordedList(network), Records.recordedInvocation(entry.record, network)).pipe(
        Effect.mapError((failure): NetworkAddFailure => ({ error: cniFailure("Networks.attach")(failure.error), prevResult: failure.prevResult }))
      )
      const networks = [...entry.record.networks]
      networks[index] = { ...network, result }
      entry.record = { ...entry.record, networks }
      yield* Records.writeRecord(confDir, entry.record).pipe(Effect.mapError((error): NetworkAddFailure => ({ error, prevResult: result })))
    })

  const attachNow = (namespace: string, containerId: string, options: AttachOptions) =>
    Effect.gen(function*() {
      const key = keyOf(namespace, containerId)
      const previous = live.get(key)
      // Owned by nobody: a release that failed (being retried) or a record from before a restart whose
      // task is gone. Either way it is the container's old attachment: it goes first.
      if (previous !== undefined && !previous.owned) yield* release(key, previous.record)
      else if (previous !== undefined) {
        return yield* Effect.fail(alreadyExists("Networks.attach", `container ${containerId} is attached already`))
      }
      yield* checkRequests("Networks.attach", options)
      const published = yield* ports.reserve(key, options.ports ?? [])
      // Checked again and registered in one step (the port probe yielded): from here `remove` sees the networks in use.
      const entry = yield* Effect.suspend(() => {
        const gone = options.networks.find((request) => !defined.has(request.network))
        if (gone !== undefined) {
          ports.release(key)
          return Effect.fail(notFound("Networks.attach", `network ${gone.network} not found`))
        }
        const entry: Live = {
          owned: true,
          record: {
            namespace,
            containerId,
            netns: netnsPath(namespace, containerId),
            ports: published,
            networks: options.networks.map((request, i) => recordedNetwork(request, `eth${i}`, i === 0 ? published : []))
          }
        }
        live.set(key, entry)
        return Effect.succeed(entry)
      })
      const record = entry.record
      let begun = 0
      let partial: Cni.RawResult | undefined
      const build = Effect.gen(function*() {
        yield* Records.writeRecord(confDir, record)
        yield* Netns.create(record.netns)
        yield* Cni.addList(cni, loopbackList, { containerId, netns: record.netns, ifname: "lo" }).pipe(
          Effect.mapError((failure) => cniFailure("Networks.attach")(failure.error))
        )
        for (let i = 0; i < record.networks.length; i++) {
          begun = i + 1
          yield* addNetwork(entry, i).pipe(
            Effect.catch((failure) => Effect.sync(() => void (partial = failure.prevResult)).pipe(Effect.andThen(Effect.fail(failure.error))))
          )
        }
      })
      return yield* build.pipe(
        Effect.tapError(() =>
          release(key, entry.record, begun, partial).pipe(
            // The attach's own failure is what the caller hears; the undo goes on in the background.
            Effect.catch(() => releaseLater(key, entry))
          )
        ),
        Effect.as(entry),
        Effect.tap(() => publish({ _tag: "Attached", attachment: Records.attachmentOf(entry.record) }))
      )
    })

  /** Releases the container's attachment (only `expected`, when given: not one made since). */
  const detachNow = (key: string, expected?: Live) =>
    Effect.gen(function*() {
      const entry = live.get(key)
      if (entry === undefined || (expected !== undefined && entry !== expected)) return
      const attachment = Records.attachmentOf(entry.record)
      yield* release(key, entry.record)
      yield* publish({ _tag: "Detached", attachment })
    })

  const detach = Effect.fn("Networks.detach")(function*(namespace: string, containerId: string) {
    yield* withKey(keyOf(namespace, containerId))(detachNow(keyOf(namespace, containerId)))
  })

  /**
   * A release that failed (each DEL already retried): its IP, ports and netns
   * stay held, so it is not dropped but tried again in the background until it
   * succeeds (each failure logged and counted), the entry owned by nobody
   * meanwhile so a new attach of the container releases it first.
   */
  const releaseLater = (key: string, entry: Live) =>
    Effect.sync(() => void (entry.owned = false)).pipe(
      Effect.andThen(FiberSet.run(retries, retryForever("Networks.detach", withKey(key)(detachNow(key, entry))))),
      Effect.asVoid
    )

  /** The release of an attachment's scope: a detach of that attachment, retried in the background if it fails. */
  const releaseInScope = (key: string, entry: Live) =>
    withKey(key)(detachNow(key, entry)).pipe(Effect.catch(() => releaseLater(key, entry)))

  const attach = (namespace: string, containerId: string, options: AttachOptions) =>
    Effect.acquireRelease(
      withKey(keyOf(namespace, containerId))(attachNow(namespace, containerId, options)),
      (entry) => releaseInScope(keyOf(namespace, containerId), entry)
    ).pipe(Effect.map((entry) => Records.attachmentOf(entry.record)), Effect.withSpan("Networks.attach"))

  /**
   * CHECKs each network of an adopted attachment, as CNI asks a runtime to of
   * what it finds again. A failure is only logged: the record still says what
   * ADD made, so its release is unaffected and nothing is held beyond it; what
   * is wrong is the running container's own connectivity, which nobody can
   * repair under it (CRI does not either), so the log line is what it gets.
   */
  const checkEntry = (entry: Live) =>
    Effect.forEach(entry.record.networks, (network) =>
      network.result === null ? Effect.void : Cni.checkList(cni, Records.recordedList(network), Records.recordedInvocation(entry.record, network), network.result).pipe(
        Effect.catch((error) =>
          Effect.logWarning(`Networks: ${entry.record.namespace}/${entry.record.containerId} on ${network.network} fails CNI CHECK: ${error.message}`)
        )
      ), { discard: true })

  const adopt = (namespace: string, containerId: string) => {
    const key = keyOf(namespace, containerId)
    return Effect.acquireRelease(
      withKey(key)(Effect.gen(function*() {
        const entry = live.get(key)
        if (entry === undefined) return Option.none<Live>()
        entry.owned = true
        yield* checkEntry(entry)
        return Option.some(entry)
      })),
      (adopted) => Option.isSome(adopted) ? releaseInScope(key, adopted.value) : Effect.void
    ).pipe(Effect.map(Option.map((entry) => Records.attachmentOf(entry.record))))
  }

  const liveEntry = (key: string, containerId: string) =>
    Effect.suspend(() => {
      const entry = live.get(key)
      return entry === undefined
        ? Effect.fail(notFound("Networks", `container ${containerId} is not attached`))
        : Effect.succeed(entry)
    })

  const connect = Effect.fn("Networks.connect")(function*(namespace: string, containerId: string, request: NetworkRequest) {
    const key = keyOf(namespace, containerId)
    return yield* withKey(key)(Effect.gen(function*() {
      const entry = yield* liveEntry(key, containerId)
      if (entry.record.networks.some((n) => n.network === request.network)) {
        return yield* Effect.fail(
          alreadyExists("Networks.connect", `endpoint with name ${containerId} already exists in network ${request.network}`)
        )
      }
      yield* checkRequests("Networks.connect", { networks: [request] })
      // Checked again and recorded in one step (as attach does): `remove` sees the network in use from here.
      const index = yield* Effect.suspend(() => {
        if (!defined.has(request.network)) {
          return Effect.fail(notFound("Networks.connect", `network ${request.network} not found`))
        }
        const used = new Set(entry.record.networks.map((n) => n.ifname))
        let n = 0
        while (used.has(`eth${n}`)) n++
        entry.record = { ...entry.record, networks: [...entry.record.networks, recordedNetwork(request, `eth${n}`, [])] }
        return Effect.succeed(entry.record.networks.length - 1)
      })
      const forget = Effect.suspend(() => {
        entry.record = { ...entry.record, networks: entry.record.networks.filter((_, i) => i !== index) }
        return Records.writeRecord(confDir, entry.record)
      })
      // The record could not be written: nothing was added, and `forget` puts the entry back first (its own
      // write is of what the file already says), so its failure leaves memory and file agreeing.
      yield* Records.writeRecord(confDir, entry.record).pipe(Effect.tapError(() => Effect.ignore(forget)))
      yield* addNetwork(entry, index).pipe(
        Effect.catch((failure) =>
          delNetwork(entry.record, entry.record.networks[index]!, failure.prevResult).pipe(
            Effect.andThen(forget),
            // The network stays in the record (forget did not run), so the attachment's release DELs it again.
            Effect.catch((error) => Effect.logError(`Networks: could not undo connecting ${containerId} to ${request.network}`, error)),
            Effect.andThen(Effect.fail(failure.error))
          )
        )
      )
      const attachment = Records.attachmentOf(entry.record)
      yield* publish({ _tag: "Attached", attachment })
      return attachment
    }))
  })

  const disconnect = Effect.fn("Networks.disconnect")(function*(namespace: string, containerId: string, name: string) {
    const key = keyOf(namespace, containerId)
    return yield* withKey(key)(Effect.gen(function*() {
      const entry = yield* liveEntry(key, containerId)
      const network = entry.record.networks.find((n) => n.network === name)
      if (network === undefined) {
        return yield* Effect.fail(notFound("Networks.disconnect", `container ${containerId} is not connected to network ${name}`))
      }
      yield* delNetwork(entry.record, network)
      entry.record = { ...entry.record, networks: entry.record.networks.filter((n) => n !== network) }
      yield* Records.writeRecord(confDir, entry.record)
      const attachment = Records.attachmentOf(entry.record)
      yield* publish({ _tag: "Attached", attachment })
      return attachment
    }))
  })

  const sweep = Effect.fn("Networks.sweep")(function*(namespace: string, keep: ReadonlySet<string>) {
    const gone = [...live.values()].filter((entry) => entry.record.namespace === namespace && !keep.has(entry.record.containerId))
    yield* Effect.forEach(gone, (entry) => detach(namespace, entry.record.containerId), { concurrency: 8, discard: true })
  })

  return {
    define,
    remove,
    definitions: Effect.sync(() => [...defined.values()].map((d) => d.checked.definition)),
    netnsPath,
    validate: checkRequests,
    attach,
    adopt,
    connect,
    disconnect,
    detach,
    get: (namespace, containerId) =>
      Effect.sync(() => Option.map(Option.fromUndefinedOr(live.get(keyOf(namespace, containerId))), (entry) => Records.attachmentOf(entry.record))),
    attachments: Effect.sync(() => [...live.values()].map((entry) => Records.attachmentOf(entry.record))),
    changes: Effect.map(PubSub.subscribe(changes), Stream.fromSubscription),
    sweep
  } satisfies NetworksShape
})
