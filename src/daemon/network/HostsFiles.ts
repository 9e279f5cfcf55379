/**
 * Each container's /etc/hosts, /etc/resolv.conf and /etc/hostname, as dockerd
 * keeps them: files in the container's directory (`<data-root>/containers/<id>/`,
 * beside its log) bind-mounted at create, writable unless the rootfs is
 * read-only.
 *
 * Names resolve on user networks as nerdctl does it, not with dockerd's
 * embedded DNS server: every member's hosts file lists the other members of
 * its user networks (EtcHosts.ts's section), and is rewritten when one comes
 * or goes — when `Networks.changes` says an attachment was made or released,
 * by us or because its container went some other way. Nothing has to run for
 * names to resolve (they keep working while the daemon is down), but only
 * clients that read /etc/hosts see them (libc, Go, busybox; not nslookup/dig).
 *
 * Gotchas:
 * - Files are rewritten in place (same inode): a rename would leave the
 *   container's bind mount on the old file.
 * - All writes go through one permit, so two changes never interleave in a file.
 * - Every join changes every member's file: n containers starting at once
 *   would be n² writes. The changed container's own file is written at once;
 *   the members' files once per burst (`BURST`), and only those that change.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { Duration, Effect, Option, Result, type Scope, Semaphore, Stream } from "effect"
import type { SpecOption } from "../../domain/OciSpec.ts"
import type { BindMount } from "../../services/Runtime.ts"
import type { Attachment, AttachmentChange, NetworksShape } from "../../services/Networks.ts"
import { HOST_GATEWAY, type HostsEntry, type Member, memberEntries, ownEntry, parseExtraHost, renderHosts } from "./EtcHosts.ts"
import { containerResolvConf, type DnsSettings, hostResolvConfPath, type ResolvMode } from "./ResolvConf.ts"

/** One network a container is on (or will be, at its next start), as its hosts file needs it. */
export interface NetworkNames {
  /** The network's CNI name (the daemon's network id), as attachments name it. */
  readonly network: string
  /** The container's aliases there (`--network-alias`, compose's service name). */
  readonly aliases: ReadonlyArray<string>
  /** Whether names resolve on it: user networks, not the default bridge (as Docker). */
  readonly resolves: boolean
}

/** What the files of one container are made from. */
export interface ContainerNames {
  readonly id: string
  /** Its name, without Docker's leading `/`. */
  readonly name: string
  readonly hostname: string
  readonly domainname: string
  /** `HostConfig.ExtraHosts`, as the client sent them (checked at create). */
  readonly extraHosts: ReadonlyArray<string>
  /** `host`: the host's network; `none`: loopback only; `networks`: the ones below. */
  readonly mode: "host" | "none" | "networks"
  readonly networks: ReadonlyArray<NetworkNames>
}

/** What the writer reads besides its containers. */
export interface HostsFilesOptions {
  /** The containers' directories' root: `<root>/<id>/hosts`, ... */
  readonly root: string
  /** The containerd namespace whose attachments are the daemon's. */
  readonly namespace: string
  /** A container of the daemon's, by id; undefined once it is gone. */
  readonly lookup: (id: string) => Effect.Effect<ContainerNames | undefined>
  /** The default bridge's gateway (`--add-host NAME:host-gateway`); undefined when there is none. */
  readonly hostGateway: () => string | undefined
  /** The attachments and their changes; without them, no container is on a network. */
  readonly networks: Option.Option<Pick<NetworksShape, "attachments" | "changes">>
  /** The host's files (tests give their own). */
  readonly host?: {
    readonly etcHosts: () => string
    readonly etcResolvConf: () => string
    readonly readFile: (file: string) => string
  } | undefined
}

/** The three files of a container. */
export const filesOf = (root: string, id: string) => ({
  hosts: path.join(root, id, "hosts"),
  resolvConf: path.join(root, id, "resolv.conf"),
  hostname: path.join(root, id, "hostname")
})

const readOrEmpty = (file: string) => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch {
    return ""
  }
}

const defaultHost = {
  etcHosts: () => readOrEmpty("/etc/hosts"),
  etcResolvConf: () => readOrEmpty("/etc/resolv.conf"),
  readFile: readOrEmpty
}

/**
 * Drops a mount at one of `destinations` that a later mount there hides: the
 * library's read-only binds of the host's files on the host's network, under
 * the container's own.
 */
export const withoutHiddenMounts = (destinations: ReadonlySet<string>): SpecOption => (spec) => ({
  ...spec,
  mounts: spec.mounts.filter((mount, i) =>
    !destinations.has(mount.destination) || !spec.mounts.slice(i + 1).some((later) => later.destination === mount.destination))
})

/** `--add-host` entries, `host-gateway` replaced; the message is dockerd's when it cannot be. */
export const extraEntries = (
  extraHosts: ReadonlyArray<string>,
  hostGateway: string | undefined
): Result.Result<ReadonlyArray<HostsEntry>, string> => {
  const entries: Array<HostsEntry> = []
  for (const value of extraHosts) {
    const parsed = parseExtraHost(value)
    if (Result.isFailure(parsed)) return Result.fail(parsed.failure)
    const { name, ip } = parsed.success
    if (ip === HOST_GATEWAY && hostGateway === undefined) return Result.fail("unable to derive the IP value for host-gateway")
    entries.push({ ip: ip === HOST_GATEWAY ? hostGateway! : ip, names: name })
  }
  return Result.succeed(entries)
}

/**
 * Writes `content` over `file` in place: the same inode, which the container's
 * bind mount holds. False if the file is gone (its container was removed).
 */
const writeInPlace = (file: string, content: string): boolean => {
  let fd: number
  try {
    fd = fs.openSync(file, "r+")
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false
    throw error
  }
  try {
    const bytes = Buffer.from(content)
    if (fs.fstatSync(fd).size === bytes.length && fs.readFileSync(fd).equals(bytes)) return true
    // Written first, then cut: a reader never sees an empty file.
    fs.writeSync(fd, bytes, 0, bytes.length, 0)
    fs.ftruncateSync(fd, bytes.length)
    return true
  } finally {
    fs.closeSync(fd)
  }
}

/** Writes a new container's three files. */
const writeNew = (files: ReturnType<typeof filesOf>, hosts: string, resolvConf: string, hostname: string) =>
  Effect.try({
    try: () => {
      fs.writeFileSync(files.hosts, hosts, { mode: 0o644 })
      fs.writeFileSync(files.resolvConf, resolvConf, { mode: 0o644 })
      fs.writeFileSync(files.hostname, `${hostname}\n`, { mode: 0o644 })
    },
    catch: (cause) => `could not write the container's hosts, resolv.conf and hostname files: ${String(cause)}`
  })

/** How a container's files are mounted: read-only with a read-only rootfs; not where it mounts something of its own. */
export interface MountSettings {
  readonly readonly: boolean
  readonly mountedAt: ReadonlySet<string>
}

/** The daemon's writer of containers' hosts, resolv.conf and hostname files. */
export interface HostsFiles {
  /**
   * Writes a new container's three files (before it is created in containerd)
   * and returns the mounts for those a mount of its own does not cover.
   */
  readonly prepare: (names: ContainerNames, settings: MountSettings & { readonly dns: DnsSettings }) => Effect.Effect<ReadonlyArray<BindMount>, string>
  /** The mounts of another container's files: a container in its network namespace reads them (as dockerd's `container:<id>` mode). */
  readonly mountsOf: (id: string, settings: MountSettings) => ReadonlyArray<BindMount>
  /** Rewrites the hosts files of these containers from the current attachments (before a start: the members it will see). */
  readonly refresh: (ids: Iterable<string>) => Effect.Effect<void>
  /**
   * Rewrites every attached container's hosts file and those of `ids`: after a
   * container's networks or aliases changed (`docker network connect`), which
   * its attachment's change may be reported before.
   */
  readonly refreshAll: (ids: Iterable<string>) => Effect.Effect<void>
  /**
   * Follows `Networks.changes` for as long as the caller's scope lasts: each
   * change rewrites the files of the container it is about and of every
   * container sharing a network with it. Every attached container's file is
   * rewritten once first (what changed while nobody followed).
   */
  readonly follow: Effect.Effect<void, never, Scope.Scope>
}

/** The mounts of container `id`'s three files at /etc, but where a mount of the container's own is. */
const mountsAt = (root: string) => (id: string, settings: MountSettings): ReadonlyArray<BindMount> => {
  const files = filesOf(root, id)
  return ([["/etc/hosts", files.hosts], ["/etc/resolv.conf", files.resolvConf], ["/etc/hostname", files.hostname]] as const)
    .filter(([destination]) => !settings.mountedAt.has(destination))
    .map(([destination, source]): BindMount => ({ type: "bind", source, destination, readonly: settings.readonly }))
}

/** How long the changes of a burst (many containers starting at once) are gathered into one pass over the members' files. */
const BURST = Duration.millis(25)

/** The writer over `options`. */
export const makeHostsFiles = (options: HostsFilesOptions): HostsFiles => {
  const host = options.host ?? defaultHost
  const mountsOf = mountsAt(options.root)
  const permit = Semaphore.makeUnsafe(1)
  const attachmentsNow: Effect.Effect<ReadonlyArray<Attachment>> = Option.match(options.networks, {
    onNone: () => Effect.succeed([]),
    onSome: (networks) =>
      Effect.map(networks.attachments, (all) => all.filter((a) => a.namespace === options.namespace))
  })

  /** What `ids` and every attached container are named, now. */
  const known = (ids: Iterable<string>, attachments: ReadonlyArray<Attachment>) =>
    Effect.map(
      Effect.forEach(new Set([...ids, ...attachments.map((a) => a.containerId)]), (id) =>
        Effect.map(options.lookup(id), (names) => [id, names] as const)),
      (pairs) => new Map(pairs.flatMap(([id, names]) => names === undefined ? [] : [[id, names] as const]))
    )

  /** The members of `network` among `attachments`, as each is named. */
  const membersOf = (network: string, attachments: ReadonlyArray<Attachment>, names: ReadonlyMap<string, ContainerNames>) =>
    attachments.flatMap((attachment): ReadonlyArray<Member> => {
      const member = names.get(attachment.containerId)
      if (member === undefined) return []
      return attachment.endpoints.filter((e) => e.network === network).map((endpoint) => ({
        ip: endpoint.address,
        name: member.name,
        id: member.id,
        aliases: member.networks.find((n) => n.network === network)?.aliases ?? []
      }))
    })

  /** A container's hosts file, now; undefined for one that keeps the host's file. */
  const hostsOf = (
    own: ContainerNames,
    attachments: ReadonlyArray<Attachment>,
    names: ReadonlyMap<string, ContainerNames>
  ): string | undefined => {
    if (own.mode === "host" && own.extraHosts.length === 0) return undefined
    // Checked at create; a gateway gone since leaves the line out rather than the whole file.
    const extra = Result.getOrElse(extraEntries(own.extraHosts, options.hostGateway()), () =>
      Result.getOrElse(extraEntries(own.extraHosts.filter((h) => !h.endsWith(`:${HOST_GATEWAY}`)), undefined), () => []))
    const endpoint = attachments.find((a) => a.containerId === own.id)?.endpoints[0]
    const resolving = own.mode === "networks" ? own.networks.filter((n) => n.resolves) : []
    return renderHosts({
      extra,
      own: endpoint === undefined ? undefined : ownEntry(endpoint.address, own.hostname, own.domainname),
      members: resolving.length === 0 ? undefined : memberEntries(resolving.flatMap((n) => membersOf(n.network, attachments, names)))
    })
  }

  /** What each hosts file was last written with: a pass writes only the files that change, and reads none. */
  const written = new Map<string, string>()

  /** Rewrites the files of `ids` (under the permit). */
  const rewrite = (ids: ReadonlySet<string>, attachments: ReadonlyArray<Attachment>) =>
    Effect.flatMap(known(ids, attachments), (names) =>
      Effect.forEach(ids, (id) => {
        const own = names.get(id)
        if (own === undefined) return Effect.sync(() => void written.delete(id))
        const content = hostsOf(own, attachments, names)
        if (content === undefined || written.get(id) === content) return Effect.void
        return Effect.try(() => {
          if (writeInPlace(filesOf(options.root, id).hosts, content)) written.set(id, content)
          else written.delete(id)
        }).pipe(
          // Not remembered as written, so the next pass writes it again; meanwhile only the container's
          // view of its peers' names is stale: nothing the daemon holds depends on the file.
          Effect.catch((cause) => Effect.logWarning(`could not update the hosts file of container ${id}`, cause))
        )
      }, { discard: true }))

  const refresh = (ids: Iterable<string>) =>
    permit.withPermit(Effect.flatMap(attachmentsNow, (attachments) => rewrite(new Set(ids), attachments)))

  /** The networks each container was last seen attached to: a change that drops one must rewrite its members too. */
  const lastSeen = new Map<string, ReadonlySet<string>>()

  /** The containers a change is about and every container on one of their networks, before or after it. */
  const affected = (changes: ReadonlyArray<AttachmentChange>, attachments: ReadonlyArray<Attachment>): ReadonlySet<string> => {
    const networks = new Set<string>()
    const ids = new Set<string>()
    for (const { _tag, attachment } of changes) {
      const id = attachment.containerId
      ids.add(id)
      for (const network of lastSeen.get(id) ?? []) networks.add(network)
      for (const endpoint of attachment.endpoints) networks.add(endpoint.network)
      if (_tag === "Detached") lastSeen.delete(id)
      else lastSeen.set(id, new Set(attachment.endpoints.map((e) => e.network)))
    }
    for (const attachment of attachments) {
      if (attachment.endpoints.some((e) => networks.has(e.network))) ids.add(attachment.containerId)
    }
    return ids
  }

  const refreshAll = (ids: Iterable<string>) =>
    permit.withPermit(Effect.flatMap(attachmentsNow, (attachments) =>
      rewrite(new Set([...ids, ...attachments.map((a) => a.containerId)]), attachments)))

  const follow = Option.match(options.networks, {
    onNone: () => Effect.void,
    onSome: (networks) =>
      Effect.gen(function*() {
        const changes = yield* networks.changes
        for (const attachment of yield* attachmentsNow) {
          lastSeen.set(attachment.containerId, new Set(attachment.endpoints.map((e) => e.network)))
        }
        // What changed before (a daemon restart: members gone or released while it was down), once, now that nothing is missed.
        yield* refreshAll([])
        yield* Effect.forkScoped(changes.pipe(
          Stream.filter((change) => change.attachment.namespace === options.namespace),
          // The members' files once per burst: n containers joining at once write each file once, not n times.
          Stream.groupedWithin(1024, BURST),
          Stream.runForEach((group) =>
            permit.withPermit(Effect.flatMap(attachmentsNow, (attachments) => rewrite(affected(group, attachments), attachments))))
        ))
      })
  })

  const prepare = (names: ContainerNames, settings: MountSettings & { readonly dns: DnsSettings }) =>
    Effect.gen(function*() {
      yield* Effect.fromResult(extraEntries(names.extraHosts, options.hostGateway()))
      const files = filesOf(options.root, names.id)
      const etcResolvConf = host.etcResolvConf()
      const effective = hostResolvConfPath(etcResolvConf)
      const mode: ResolvMode = names.mode === "networks" ? "bridge" : names.mode
      const resolv = containerResolvConf(
        { etc: etcResolvConf, effective: effective === "/etc/resolv.conf" ? etcResolvConf : host.readFile(effective) },
        mode,
        settings.dns
      )
      if (resolv.fallbackUsed) {
        yield* Effect.logInfo(
          `container ${names.id}: no nameserver but localhost ones in the host's resolv.conf, so it gets Google's public ones (8.8.8.8, 8.8.4.4), as dockerd`
        )
      }
      yield* permit.withPermit(Effect.gen(function*() {
        const attachments = yield* attachmentsNow
        const named = new Map([...(yield* known([], attachments)), [names.id, names]])
        const hosts = hostsOf(names, attachments, named)
        yield* writeNew(files, hosts ?? host.etcHosts(), resolv.content, names.hostname)
        if (hosts !== undefined) written.set(names.id, hosts)
      }))
      return mountsOf(names.id, settings)
    })

  return { prepare, mountsOf, refresh, refreshAll, follow }
}
