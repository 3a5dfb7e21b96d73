/**
 * The presence rules the simulator enforces, as pure functions over an injected time (epoch ms).
 * Sources: research/graph-presence.md §1.1–§1.4 and §2. Where the docs are silent the choice is marked
 * "assumption" and listed in README.md.
 */

export interface PresenceValue {
  availability: string
  activity: string
}

/** The five pairs setPresence accepts (§1.1, [C]). */
export const SETTABLE_PAIRS: readonly PresenceValue[] = [
  { availability: 'Available', activity: 'Available' },
  { availability: 'Busy', activity: 'InACall' },
  { availability: 'Busy', activity: 'InAConferenceCall' },
  { availability: 'Away', activity: 'Away' },
  { availability: 'DoNotDisturb', activity: 'Presenting' },
]

/** The pairs setUserPreferredPresence accepts (§1.4, [C]). */
export const PREFERRED_PAIRS: readonly PresenceValue[] = [
  { availability: 'Available', activity: 'Available' },
  { availability: 'Busy', activity: 'Busy' },
  { availability: 'DoNotDisturb', activity: 'DoNotDisturb' },
  { availability: 'BeRightBack', activity: 'BeRightBack' },
  { availability: 'Away', activity: 'Away' },
  { availability: 'Offline', activity: 'OffWork' },
]

export const MINUTE_MS = 60_000
/** setPresence expirationDuration bounds and default (§1.1, [C]). */
export const MIN_SESSION_MS = 5 * MINUTE_MS
export const MAX_SESSION_MS = 240 * MINUTE_MS
export const DEFAULT_SESSION_MS = 5 * MINUTE_MS
/** Keep-alive: an Available session not refreshed for this long starts fading (§1.2, [C]). */
export const FADE_STEP_MS = 5 * MINUTE_MS

export const OFFLINE: PresenceValue = { availability: 'Offline', activity: 'Offline' }
export const UNKNOWN: PresenceValue = { availability: 'PresenceUnknown', activity: 'PresenceUnknown' }

export function isPair(list: readonly PresenceValue[], availability: unknown, activity: unknown): boolean {
  return list.some((p) => p.availability === availability && p.activity === activity)
}

/**
 * Parses an ISO-8601 duration (PnDTnHnMnS, the Edm.Duration subset Graph uses) into ms.
 * Returns undefined when the text is not a duration. Years/months are rejected: they have no fixed length.
 */
export function parseIsoDuration(text: string): number | undefined {
  const m = /^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(text)
  if (m === null || text === 'P' || text.endsWith('T')) return undefined
  const [, d, h, min, s] = m
  if (d === undefined && h === undefined && min === undefined && s === undefined) return undefined
  const n = (v: string | undefined): number => (v === undefined ? 0 : Number(v))
  return Math.round(((n(d) * 24 + n(h)) * 60 + n(min)) * MINUTE_MS + n(s) * 1000)
}

/** Who owns a presence session: an app via setPresence, or the person's own Teams client. */
export type SessionOwner = { kind: 'app'; appId: string } | { kind: 'teams' }

export interface PresenceSession extends PresenceValue {
  owner: SessionOwner
  /** When this availability/activity was first set (a refresh with the same values keeps it). */
  setAt: number
  /** Last setPresence call (keep-alive). */
  lastRefresh: number
  /** Session end; Infinity for a Teams client, which keeps its own session alive while signed in. */
  expiresAt: number
}

export interface PreferredPresence extends PresenceValue {
  setAt: number
  expiresAt: number
}

/**
 * What a session contributes at `now`, or undefined once it expired (an expired session is gone: §1.2
 * "at expirationDuration the session becomes Offline", i.e. it no longer counts).
 * Fading applies to app sessions that are Available: +5 min → Available/AvailableInactive, +10 min → Away
 * (§1.2, [C]). For Busy/DoNotDisturb/Away sessions the docs say nothing about fading; assumption: they hold
 * their state until expiry.
 */
export function sessionStateAt(session: PresenceSession, now: number): PresenceValue | undefined {
  if (now >= session.expiresAt) return undefined
  if (session.owner.kind === 'app' && session.availability === 'Available') {
    const idle = now - session.lastRefresh
    if (idle >= 2 * FADE_STEP_MS) return { availability: 'Away', activity: 'Away' }
    if (idle >= FADE_STEP_MS) return { availability: 'Available', activity: 'AvailableInactive' }
  }
  return { availability: session.availability, activity: session.activity }
}

/** §1.2 [C]: DoNotDisturb > Busy > Available > Away. BeRightBack sits just above Away (assumption). */
const AVAILABILITY_RANK: Record<string, number> = {
  DoNotDisturb: 60,
  Busy: 50,
  BusyIdle: 45,
  Available: 40,
  AvailableIdle: 35,
  BeRightBack: 30,
  Away: 20,
  Offline: 10,
}

/**
 * Within one availability the docs give no order; assumption: the more specific, more "engaged" activity
 * wins (presenting > conference > call > meeting > plain), which is what Teams shows when a call starts
 * during a meeting.
 */
const ACTIVITY_RANK: Record<string, number> = {
  Presenting: 90,
  InAConferenceCall: 80,
  InACall: 70,
  InAMeeting: 60,
  Focusing: 50,
  UrgentInterruptionsOnly: 45,
  AvailableInactive: 10,
}

function rank(table: Record<string, number>, key: string, fallback: number): number {
  return table[key] ?? fallback
}

/**
 * The aggregate Graph reports for one user at `now`.
 * - user-preferred presence wins, but only while at least one session exists (§1.4, [C]);
 * - otherwise the highest-ranked live session; ties go to the most recently set one;
 * - no live session: Offline/Offline after the user has had one (§1.3 [C]), PresenceUnknown before
 *   (assumption: what Graph shows for accounts that never signed in to Teams).
 */
export function aggregatePresence(
  sessions: Iterable<PresenceSession>,
  preferred: PreferredPresence | undefined,
  everHadSession: boolean,
  now: number,
): PresenceValue {
  let best: { value: PresenceValue; setAt: number } | undefined
  let live = 0
  for (const s of sessions) {
    const value = sessionStateAt(s, now)
    if (value === undefined) continue
    live++
    if (best === undefined || compare(value, s.setAt, best.value, best.setAt) > 0) best = { value, setAt: s.setAt }
  }
  if (best === undefined) return everHadSession ? OFFLINE : UNKNOWN
  if (preferred !== undefined && now < preferred.expiresAt && live > 0) {
    return { availability: preferred.availability, activity: preferred.activity }
  }
  return best.value
}

function compare(a: PresenceValue, aSetAt: number, b: PresenceValue, bSetAt: number): number {
  const av = rank(AVAILABILITY_RANK, a.availability, 0) - rank(AVAILABILITY_RANK, b.availability, 0)
  if (av !== 0) return av
  const ac = rank(ACTIVITY_RANK, a.activity, 20) - rank(ACTIVITY_RANK, b.activity, 20)
  if (ac !== 0) return ac
  return aSetAt - bSetAt
}

/** Default setUserPreferredPresence expiry when none is given (§1.4, [C]): DND/Busy 1 day, others 7 days. */
export function defaultPreferredMs(availability: string): number {
  return availability === 'DoNotDisturb' || availability === 'Busy' ? 24 * 60 * MINUTE_MS : 7 * 24 * 60 * MINUTE_MS
}
