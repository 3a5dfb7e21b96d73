/**
 * Per-user presence state of the simulated tenant: one session per (user, app), one Teams-client session,
 * the user-preferred presence, and a sequence number that moves whenever the aggregate changes.
 * Time is read from the injected `now()` on every call, so fading and expiry need no timers: they are
 * evaluated whenever someone looks.
 */
import {
  aggregatePresence,
  sessionStateAt,
  type PreferredPresence,
  type PresenceSession,
  type PresenceValue,
} from './presence-model.js'

interface UserPresence {
  /** Key: 'app:<appId>' or 'teams'. */
  sessions: Map<string, PresenceSession>
  preferred: PreferredPresence | undefined
  everHadSession: boolean
  lastAggregate: PresenceValue | undefined
  sequence: number
}

export interface PresenceSnapshot extends PresenceValue {
  /** Zero-padded decimal: sorts lexicographically like Graph's opaque sequenceNumber. */
  sequenceNumber: string
}

export interface SessionView extends PresenceSession {
  /** What the session contributes now (after fading). */
  effective: PresenceValue
}

export interface PresenceChange {
  userId: string
  previous: PresenceValue
  current: PresenceValue
  sequenceNumber: string
}

const TEAMS_KEY = 'teams'
const appKey = (appId: string): string => `app:${appId.toLowerCase()}`

export class PresenceStore {
  private readonly users = new Map<string, UserPresence>()
  private sequence = 0

  constructor(
    private readonly now: () => number,
    private readonly onChange: (change: PresenceChange) => void,
  ) {}

  setAppSession(userId: string, appId: string, value: PresenceValue, durationMs: number): void {
    this.upsertSession(userId, appKey(appId), { kind: 'app', appId }, value, this.now() + durationMs)
  }

  /** false when the app had no live session for the user (Graph answers 404). */
  clearAppSession(userId: string, appId: string): boolean {
    const user = this.sweep(userId)
    const removed = user?.sessions.delete(appKey(appId)) ?? false
    if (removed) this.observe(userId)
    return removed
  }

  setTeamsSession(userId: string, value: PresenceValue): void {
    this.upsertSession(userId, TEAMS_KEY, { kind: 'teams' }, value, Number.POSITIVE_INFINITY)
  }

  clearTeamsSession(userId: string): void {
    const user = this.sweep(userId)
    if (user?.sessions.delete(TEAMS_KEY) === true) this.observe(userId)
  }

  setPreferred(userId: string, value: PresenceValue, durationMs: number): void {
    const user = this.user(userId)
    const now = this.now()
    user.preferred = { ...value, setAt: now, expiresAt: now + durationMs }
    this.observe(userId)
  }

  clearPreferred(userId: string): void {
    const user = this.user(userId)
    user.preferred = undefined
    this.observe(userId)
  }

  getSession(userId: string, appId: string): SessionView | undefined {
    return this.view(userId, appKey(appId))
  }

  getTeamsSession(userId: string): SessionView | undefined {
    return this.view(userId, TEAMS_KEY)
  }

  getPreferred(userId: string): PreferredPresence | undefined {
    return this.sweep(userId)?.preferred
  }

  /** The aggregate right now; also advances the sequence number if it changed since the last look. */
  read(userId: string): PresenceSnapshot {
    this.observe(userId)
    const user = this.users.get(userId)
    const value = user?.lastAggregate ?? aggregatePresence([], undefined, false, this.now())
    return { ...value, sequenceNumber: formatSequence(user?.sequence ?? 0) }
  }

  private upsertSession(
    userId: string,
    key: string,
    owner: PresenceSession['owner'],
    value: PresenceValue,
    expiresAt: number,
  ): void {
    const user = this.sweep(userId) ?? this.user(userId)
    const now = this.now()
    const existing = user.sessions.get(key)
    const same = existing?.availability === value.availability && existing.activity === value.activity
    user.sessions.set(key, {
      owner,
      availability: value.availability,
      activity: value.activity,
      // A refresh with unchanged values keeps setAt, so tie-breaking stays stable across keep-alives.
      setAt: same ? existing.setAt : now,
      lastRefresh: now,
      expiresAt,
    })
    user.everHadSession = true
    this.observe(userId)
  }

  private view(userId: string, key: string): SessionView | undefined {
    const session = this.sweep(userId)?.sessions.get(key)
    if (session === undefined) return undefined
    const effective = sessionStateAt(session, this.now())
    return effective === undefined ? undefined : { ...session, effective }
  }

  private user(userId: string): UserPresence {
    let user = this.users.get(userId)
    if (user === undefined) {
      user = { sessions: new Map(), preferred: undefined, everHadSession: false, lastAggregate: undefined, sequence: 0 }
      this.users.set(userId, user)
    }
    return user
  }

  /** Drops expired sessions and an expired preference. */
  private sweep(userId: string): UserPresence | undefined {
    const user = this.users.get(userId)
    if (user === undefined) return undefined
    const now = this.now()
    for (const [key, s] of user.sessions) if (now >= s.expiresAt) user.sessions.delete(key)
    if (user.preferred !== undefined && now >= user.preferred.expiresAt) user.preferred = undefined
    return user
  }

  private observe(userId: string): void {
    const user = this.sweep(userId) ?? this.user(userId)
    const current = aggregatePresence(user.sessions.values(), user.preferred, user.everHadSession, this.now())
    const previous = user.lastAggregate
    if (previous?.availability === current.availability && previous.activity === current.activity) return
    user.lastAggregate = current
    user.sequence = ++this.sequence
    if (previous !== undefined) {
      this.onChange({ userId, previous, current, sequenceNumber: formatSequence(user.sequence) })
    }
  }
}

function formatSequence(n: number): string {
  return n.toString().padStart(20, '0')
}
