/**
 * Each network's own iptables rules, in chains of ours, as dockerd lays out
 * its bridges' (libnetwork `setupIPTables`): forwarding accepted to and from
 * the bridge (FORWARD's policy may be DROP beside a dockerd), Docker's
 * two-stage isolation between our bridges, and egress masquerade of the
 * subnet (none for an internal network, whose traffic off the bridge is
 * dropped instead). Doing this once per network, not per container, is what
 * keeps the per-container ADD free of iptables (the `firewall` plugin costs
 * ~250 ms per container and its isolation rules leak and race).
 *
 * Every rule carries the comment `efc:<bridge>`, so a network's rules are
 * found in `iptables-save` and removed exactly, whoever else (another daemon
 * of ours, portmap, dockerd) writes the same tables. Installing first deletes
 * what is there under that comment, in the same `iptables-restore --noflush`
 * transaction: re-defining a network after a restart never duplicates a rule.
 *
 * Gotcha: `iptables-restore --noflush` flushes a user chain it is told to
 * declare, so chains are created with `iptables -N`, once, never declared.
 */
import { Effect } from "effect"
import type { ContainerdError } from "../domain/ContainerdError.ts"
import { runCommand } from "./Command.ts"

/** What a network's rules are made from. */
export interface NetworkRules {
  readonly bridge: string
  readonly subnet: string
  readonly internal: boolean
}

/** The chains we own, by table. */
export const Chains = {
  forward: "EFC-FORWARD",
  isolation1: "EFC-ISOLATION-STAGE-1",
  isolation2: "EFC-ISOLATION-STAGE-2",
  postrouting: "EFC-POSTROUTING"
} as const

const comment = (bridge: string) => `-m comment --comment efc:${bridge}`

/** The rules of one network, as `-A` lines by table. */
export const networkRules = (rules: NetworkRules): { readonly filter: ReadonlyArray<string>; readonly nat: ReadonlyArray<string> } => {
  const { bridge: br, internal, subnet } = rules
  const tag = comment(br)
  const filter = [
    `-A ${Chains.forward} -o ${br} ${tag} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`,
    // Inbound through a published port (portmap's DNAT).
    `-A ${Chains.forward} -o ${br} ${tag} -m conntrack --ctstate DNAT -j ACCEPT`,
    `-A ${Chains.forward} -i ${br} -o ${br} ${tag} -j ACCEPT`,
    ...(internal
      ? [
        `-A ${Chains.isolation1} -i ${br} ! -o ${br} ${tag} -j DROP`,
        `-A ${Chains.isolation1} -o ${br} ! -i ${br} ${tag} -j DROP`
      ]
      : [
        `-A ${Chains.forward} -i ${br} ! -o ${br} ${tag} -j ACCEPT`,
        `-A ${Chains.isolation1} -i ${br} ! -o ${br} ${tag} -j ${Chains.isolation2}`
      ]),
    `-A ${Chains.isolation2} -o ${br} ${tag} -j DROP`
  ]
  const nat = internal ? [] : [`-A ${Chains.postrouting} -s ${subnet} ! -o ${br} ${tag} -j MASQUERADE`]
  return { filter, nat }
}

/** Held (flock(1)) while our chains and jumps are checked and made, so two daemons starting at once make each once. */
const SETUP_LOCK = "/run/effect-containerd-iptables.lock"

const ensureChainScript = (table: string, chain: string) =>
  `iptables -w -t ${table} -S ${chain} >/dev/null 2>&1 || iptables -w -t ${table} -N ${chain} || iptables -w -t ${table} -S ${chain} >/dev/null`

/** Makes the jump unless it is there, and removes extra copies (left by a daemon that checked without the lock). */
const ensureJumpScript = (table: string, chain: string, rule: string, position: "first" | "last") =>
  [
    `iptables -w -t ${table} -C ${chain} ${rule} 2>/dev/null || iptables -w -t ${table} ${
      position === "first" ? `-I ${chain} 1` : `-A ${chain}`
    } ${rule}`,
    `while [ "$(iptables -w -t ${table} -S ${chain} | grep -c -x -- '-A ${chain} ${rule}')" -gt 1 ]; do iptables -w -t ${table} -D ${chain} ${rule}; done`
  ].join("\n")

/**
 * Our chains and the jumps into them: FORWARD → EFC-FORWARD, whose first rule
 * is the isolation (before any accept, as DOCKER-ISOLATION-STAGE-1 comes first
 * in FORWARD), and POSTROUTING → EFC-POSTROUTING. Checked and made by one
 * shell under a lock of ours (a check-then-insert by two daemons at once would
 * insert a jump twice). Left in place when networks go (shared by every daemon
 * of ours, as CNI leaves its CNI-HOSTPORT-* chains).
 */
export const ensureChains: Effect.Effect<void, ContainerdError> = Effect.asVoid(
  runCommand("Iptables", "flock", ["-w", "30", SETUP_LOCK, "sh", "-ec", [
    ensureChainScript("filter", Chains.isolation2),
    ensureChainScript("filter", Chains.isolation1),
    ensureChainScript("filter", Chains.forward),
    ensureChainScript("nat", Chains.postrouting),
    ensureJumpScript("filter", Chains.forward, `-j ${Chains.isolation1}`, "first"),
    ensureJumpScript("filter", "FORWARD", `-j ${Chains.forward}`, "first"),
    ensureJumpScript("nat", "POSTROUTING", `-j ${Chains.postrouting}`, "last")
  ].join("\n")], { timeoutMs: 40_000 })
)

/** The `-A` lines of `iptables-save` carrying `bridge`'s comment, by table. */
export const installedRules = (bridge: string): Effect.Effect<Record<string, ReadonlyArray<string>>, ContainerdError> =>
  runCommand("Iptables", "iptables-save", []).pipe(Effect.map((dump) => rulesIn(dump, bridge)))

const rulesIn = (dump: string, bridge: string): Record<string, Array<string>> => {
  const tagged = new RegExp(`--comment "?efc:${bridge.replace(/[.]/g, "\\.")}"?( |$)`)
  const byTable: Record<string, Array<string>> = { filter: [], nat: [] }
  let table = ""
  for (const line of dump.split("\n")) {
    if (line.startsWith("*")) table = line.slice(1)
    else if (line.startsWith("-A ") && tagged.test(line)) (byTable[table] ??= []).push(line)
  }
  return byTable
}

const restore = (tables: Record<string, ReadonlyArray<string>>) => {
  const input = Object.entries(tables)
    .filter(([, lines]) => lines.length > 0)
    .map(([table, lines]) => `*${table}\n${lines.join("\n")}\nCOMMIT\n`)
    .join("")
  return input === "" ? Effect.void : Effect.asVoid(runCommand("Iptables", "iptables-restore", ["--noflush", "-w"], { stdin: input }))
}

const deletions = (installed: Record<string, ReadonlyArray<string>>) =>
  Object.fromEntries(Object.entries(installed).map(([table, lines]) => [table, lines.map((line) => `-D${line.slice(2)}`)]))

/** Installs a network's rules in one transaction, replacing any it had (idempotent). */
export const install = (rules: NetworkRules): Effect.Effect<void, ContainerdError> =>
  installedRules(rules.bridge).pipe(
    Effect.flatMap((installed) => {
      const wanted = networkRules(rules)
      const old = deletions(installed)
      return restore({
        filter: [...(old.filter ?? []), ...wanted.filter],
        nat: [...(old.nat ?? []), ...wanted.nat]
      })
    })
  )

/** Removes exactly a network's rules (those with its comment); nothing if there are none. */
export const uninstall = (bridge: string): Effect.Effect<void, ContainerdError> =>
  installedRules(bridge).pipe(Effect.flatMap((installed) => restore(deletions(installed))))
