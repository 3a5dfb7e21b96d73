import type { DirectoryPersonRow } from '../store/directory-store.js'

export interface SeatPlan {
  /** Active people over the limit: the most recently added lose their seat. */
  deactivate: DirectoryPersonRow[]
  /** People waiting for a seat (inactive because of seats) that fit again, oldest first. */
  reactivate: DirectoryPersonRow[]
  /** People holding a seat after the plan. */
  seated: number
}

/**
 * Who holds a seat: people the relay can sync (matched to an Entra user) and not inactive for another reason,
 * in the order they were added (created time, then id); the first `limit` hold one. Pure and deterministic.
 * `limit` undefined: no limit, so everyone waiting for a seat gets one.
 */
export function planSeats(people: readonly DirectoryPersonRow[], limit: number | undefined): SeatPlan {
  const contenders = people
    .filter((p) => p.graphUserId !== null && (p.active || p.inactiveReason === 'seats'))
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id - b.id)
  const cap = limit ?? Number.POSITIVE_INFINITY
  const deactivate: DirectoryPersonRow[] = []
  const reactivate: DirectoryPersonRow[] = []
  contenders.forEach((person, index) => {
    if (index < cap && !person.active) reactivate.push(person)
    if (index >= cap && person.active) deactivate.push(person)
  })
  return { deactivate, reactivate, seated: Math.min(contenders.length, cap) }
}
