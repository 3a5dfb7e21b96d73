/**
 * Splits a tenant's people into presence-subscription shards: at most 650 ids each (Graph's limit for
 * `id in (...)`), one shard per service account (Graph allows one presence subscription per app per delegated
 * user). People beyond the accounts' capacity are polled.
 *
 * Stable on purpose: a person stays in their current shard while it exists and has room, so adding one person
 * changes one subscription, not all of them. Pure: no I/O, no clock.
 */
export const MAX_SHARD_SIZE = 650

export interface ShardPlan {
  /** Account id → the Graph user ids its subscription should cover (sorted). Accounts without people are absent. */
  shards: Map<string, string[]>
  /** People no shard can take: polled. */
  unsubscribed: string[]
}

export function planShards(
  people: readonly string[],
  accounts: readonly string[],
  current: ReadonlyMap<string, readonly string[]>,
  maxShardSize = MAX_SHARD_SIZE,
): ShardPlan {
  const wanted = new Set(people.map((p) => p.toLowerCase()))
  const shards = new Map<string, string[]>()
  const placed = new Set<string>()
  for (const account of accounts) {
    const kept: string[] = []
    for (const member of current.get(account) ?? []) {
      const id = member.toLowerCase()
      if (wanted.has(id) && !placed.has(id) && kept.length < maxShardSize) {
        kept.push(id)
        placed.add(id)
      }
    }
    shards.set(account, kept)
  }
  const rest = [...wanted].filter((id) => !placed.has(id)).sort()
  // Fill the emptiest shard first, so people spread evenly across the accounts.
  const unsubscribed: string[] = []
  for (const id of rest) {
    let target: string[] | undefined
    for (const members of shards.values()) {
      if (members.length < maxShardSize && (target === undefined || members.length < target.length)) target = members
    }
    if (target === undefined) unsubscribed.push(id)
    else target.push(id)
  }
  for (const [account, members] of shards) {
    if (members.length === 0) shards.delete(account)
    else members.sort()
  }
  return { shards, unsubscribed }
}

/** True when both lists hold the same ids, whatever the order. */
export function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(a)
  return b.every((x) => set.has(x))
}
