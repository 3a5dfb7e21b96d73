import type { Logger } from 'pino'
import type { LinkData, ResultData, StatusData, TelemetryData } from '#protocol/schemas.js'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'

/**
 * online: connected, and in the last window both a message from the gateway and an answered command or ping.
 * connected: the session is up but quiet, or a ping went unanswered.
 * offline: last will / offline status, never connected, or revoked.
 */
export type GatewayState = 'online' | 'connected' | 'offline'

export interface GatewayView {
  gatewayId: string
  tenantId: string
  state: GatewayState
  /** Why, in words an admin understands. */
  reason: string
  /** Epoch ms since when the gateway is in this state. */
  since: number
  /** Epoch ms of the last message from the gateway (null: never). */
  lastSeen: number | null
  /** Epoch ms of the last command or ping it answered (null: never). */
  lastAnswered: number | null
  /** Round trip of the last answered ping or command, ms. */
  lastRoundTripMs: number | null
  version: string | null
  /** The root file system slot the box booted ("A"/"B"); null when it has not said (no A/B slots, older software). */
  slot: string | null
  links: LinkData[]
  telemetry: { at: number; data: TelemetryData } | null
}

export interface GatewayLivenessOptions {
  /** Online needs traffic both ways within this window; default 5 minutes. */
  activeWindowMs?: number
  /** A connected gateway is pinged when nothing was answered for this long; default 1 minute. */
  pingAfterMs?: number
  /** How often states are re-evaluated and pings sent; default 15 s. */
  checkIntervalMs?: number
  /**
   * After a birth, the first ping waits this long (default 5 s): the gateway is busy with its snapshot, and a
   * result on its res/ topic right after connect would only get in the way of whoever else is talking to it.
   */
  firstPingDelayMs?: number
}

export interface GatewayLivenessDeps {
  clock: Clock
  logger: Logger
  counters: Counters
  /** Sends cmd/ping and resolves with the gateway's result (RelayLink.sendPing). */
  ping(gatewayId: string): Promise<ResultData>
  /** The gateways the relay knows, with their tenant. */
  gateways(): ReadonlyArray<{ id: string; tenantId: string }>
  /** Keeps each telemetry message (TelemetryStore.append); failures are logged, never thrown. */
  saveTelemetry?: ((gatewayId: string, at: Date, data: TelemetryData) => Promise<void>) | undefined
  /** Told about every state change (event log, console push). */
  onChange?: ((view: GatewayView, previous: GatewayState) => void) | undefined
}

interface Record {
  session: 'never' | 'up' | 'down'
  downReason: string
  revoked: string | undefined
  /** The box's clock error as last measured (ms, positive: ahead), when beyond the allowed skew. */
  clockSkewMs: number | null
  lastSeen: number | null
  lastAnswered: number | null
  lastRoundTripMs: number | null
  pingFailedAt: number | null
  pingFailure: string
  pingInFlight: boolean
  sessionUpAt: number | null
  firstPing: ClockTimer | undefined
  version: string | null
  slot: string | null
  links: Map<string, LinkData>
  telemetry: { at: number; data: TelemetryData } | null
  state: GatewayState
  reason: string
  since: number
}

const MINUTE = 60_000

/**
 * Each gateway's liveness as the relay sees it, from its status (birth and last will), its messages, and the
 * answers to the relay's commands and pings. Pings a connected gateway that has answered nothing for
 * `pingAfterMs`, so "Online" proves the path works both ways.
 */
export class GatewayLiveness {
  readonly #options: Required<GatewayLivenessOptions>
  readonly #deps: GatewayLivenessDeps
  readonly #log: Logger
  readonly #records = new Map<string, Record>()
  #timer: ClockTimer | undefined
  #started = false

  constructor(options: GatewayLivenessOptions, deps: GatewayLivenessDeps) {
    this.#options = { activeWindowMs: 5 * MINUTE, pingAfterMs: MINUTE, checkIntervalMs: 15_000, firstPingDelayMs: 5000, ...options }
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'gateway-liveness' })
  }

  start(): void {
    if (this.#started) return
    this.#started = true
    this.#schedule()
  }

  stop(): void {
    if (!this.#started) return
    this.#started = false
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    for (const record of this.#records.values()) {
      this.#deps.clock.clearTimeout(record.firstPing)
      record.firstPing = undefined
    }
  }

  /** What an update report says the box runs now (version and slot), between two births. */
  onRunning(gatewayId: string, version: string, slot: string): void {
    const record = this.#record(gatewayId)
    record.version = version
    record.slot = slot
  }

  /** The slot each box last reported, from the store (after a relay restart, before the boxes' births). */
  restoreSlots(slots: ReadonlyMap<string, string>): void {
    for (const [gatewayId, slot] of slots) this.#record(gatewayId).slot = slot
  }

  /** Birth (`online`, on every connect) and last will / orderly shutdown (`offline`). */
  onStatus(gatewayId: string, data: StatusData): void {
    const record = this.#record(gatewayId)
    record.version = data.version
    if (data.slot !== undefined) record.slot = data.slot
    this.#deps.clock.clearTimeout(record.firstPing)
    record.firstPing = undefined
    if (data.state === 'online') {
      record.session = 'up'
      record.pingFailedAt = null
      record.sessionUpAt = this.#deps.clock.now()
      const birth = record.sessionUpAt
      if (this.#started) {
        record.firstPing = this.#deps.clock.setTimeout(() => {
          record.firstPing = undefined
          // Only if nothing was answered since the birth (a command may have proved the path already).
          if (record.session === 'up' && record.revoked === undefined && (record.lastAnswered === null || record.lastAnswered < birth)) void this.#ping(gatewayId, record)
        }, this.#options.firstPingDelayMs)
      }
    } else {
      record.session = 'down'
      record.downReason = data.reason === 'connection lost'
        ? 'last will: the connection to the gateway was lost'
        : `the gateway went offline: ${data.reason ?? 'no reason given'}`
    }
    this.#evaluate(gatewayId, record)
  }

  /** Any valid message from the gateway. */
  onActivity(gatewayId: string): void {
    const record = this.#record(gatewayId)
    record.lastSeen = this.#deps.clock.now()
    this.#evaluate(gatewayId, record)
  }

  /** A command or ping the gateway answered (ok or not: an answer proves the path). */
  onCommandAnswered(gatewayId: string, roundTripMs: number): void {
    const record = this.#record(gatewayId)
    record.lastAnswered = this.#deps.clock.now()
    record.lastRoundTripMs = roundTripMs
    record.pingFailedAt = null
    this.#evaluate(gatewayId, record)
  }

  onLink(gatewayId: string, data: LinkData): void {
    this.#record(gatewayId).links.set(data.connectorId, data)
  }

  async onTelemetry(gatewayId: string, data: TelemetryData): Promise<void> {
    const record = this.#record(gatewayId)
    const at = this.#deps.clock.now()
    record.telemetry = { at, data }
    if (data.version !== undefined) record.version = data.version
    try {
      await this.#deps.saveTelemetry?.(gatewayId, new Date(at), data)
    } catch (err) {
      this.#deps.counters.inc('fleet.telemetry_save_failed')
      this.#log.warn({ gatewayId, err: (err as Error).message }, 'could not store telemetry; the latest stays in memory')
    }
  }

  /** After a restart: the latest telemetry from the store. */
  restoreTelemetry(rows: ReadonlyArray<{ gatewayId: string; at: Date; data: TelemetryData }>): void {
    for (const row of rows) this.#record(row.gatewayId).telemetry = { at: row.at.getTime(), data: row.data }
  }

  /** Revoked in the console: offline at once, with the reason, whatever else arrives. */
  /** The relay measured the box's clock error (null: within bounds again). */
  onClockSkew(gatewayId: string, skewMs: number | null): void {
    const record = this.#record(gatewayId)
    record.clockSkewMs = skewMs
    this.#evaluate(gatewayId, record)
  }

  onRevoked(gatewayId: string, reason: string): void {
    const record = this.#record(gatewayId)
    record.revoked = reason
    this.#evaluate(gatewayId, record)
  }

  /** Re-enrolled after a revocation. */
  onReinstated(gatewayId: string): void {
    const record = this.#record(gatewayId)
    record.revoked = undefined
    this.#evaluate(gatewayId, record)
  }

  view(gatewayId: string): GatewayView | undefined {
    const known = this.#deps.gateways().find((g) => g.id === gatewayId)
    if (!known) return undefined
    const record = this.#record(gatewayId)
    this.#evaluate(gatewayId, record)
    return this.#toView(gatewayId, known.tenantId, record)
  }

  list(tenantId?: string): GatewayView[] {
    return this.#deps.gateways()
      .filter((g) => tenantId === undefined || g.tenantId === tenantId)
      .map((g) => {
        const record = this.#record(g.id)
        this.#evaluate(g.id, record)
        return this.#toView(g.id, g.tenantId, record)
      })
      .sort((a, b) => a.gatewayId.localeCompare(b.gatewayId))
  }

  /** One evaluation pass: states, then pings where nothing was answered for pingAfterMs (tests call it directly). */
  async check(): Promise<void> {
    const pings: Promise<void>[] = []
    for (const { id } of this.#deps.gateways()) {
      const record = this.#record(id)
      this.#evaluate(id, record)
      if (record.session !== 'up' || record.revoked !== undefined || record.pingInFlight) continue
      const now = this.#deps.clock.now()
      const quietFor = now - Math.max(record.lastAnswered ?? -Infinity, record.pingFailedAt ?? -Infinity, record.sessionUpAt ?? -Infinity)
      if (quietFor >= this.#options.pingAfterMs) pings.push(this.#ping(id, record))
    }
    await Promise.all(pings)
  }

  #schedule(): void {
    this.#timer = this.#deps.clock.setTimeout(() => {
      // The next tick is armed first: a slow ping (in flight, guarded per gateway) never delays the others.
      if (this.#started) this.#schedule()
      void this.check()
    }, this.#options.checkIntervalMs)
  }

  async #ping(gatewayId: string, record: Record): Promise<void> {
    if (record.pingInFlight) return
    record.pingInFlight = true
    this.#deps.counters.inc('fleet.pings')
    try {
      await this.#deps.ping(gatewayId)
      // onCommandAnswered (from the relay link) has recorded the answer.
    } catch (err) {
      this.#deps.counters.inc('fleet.pings_unanswered')
      record.pingFailedAt = this.#deps.clock.now()
      record.pingFailure = (err as Error).message
      this.#log.info({ gatewayId, err: record.pingFailure }, 'gateway did not answer a ping')
    } finally {
      record.pingInFlight = false
      this.#evaluate(gatewayId, record)
    }
  }

  #record(gatewayId: string): Record {
    let record = this.#records.get(gatewayId)
    if (!record) {
      record = {
        session: 'never', downReason: '', revoked: undefined, clockSkewMs: null, lastSeen: null, lastAnswered: null, lastRoundTripMs: null,
        pingFailedAt: null, pingFailure: '', pingInFlight: false, sessionUpAt: null, firstPing: undefined, version: null, slot: null, links: new Map(), telemetry: null,
        state: 'offline', reason: 'never connected', since: this.#deps.clock.now(),
      }
      this.#records.set(gatewayId, record)
    }
    return record
  }

  #evaluate(gatewayId: string, record: Record): void {
    const now = this.#deps.clock.now()
    const window = this.#options.activeWindowMs
    let state: GatewayState
    let reason: string
    if (record.revoked !== undefined) {
      state = 'offline'
      reason = `revoked: ${record.revoked}`
    } else if (record.session === 'never') {
      state = 'offline'
      reason = 'never connected'
    } else if (record.session === 'down') {
      state = 'offline'
      reason = record.downReason
    } else {
      const heard = record.lastSeen !== null && now - record.lastSeen <= window
      const answered = record.lastAnswered !== null && now - record.lastAnswered <= window
      const pingFailed = record.pingFailedAt !== null && (record.lastAnswered === null || record.pingFailedAt > record.lastAnswered)
      if (pingFailed) {
        state = 'connected'
        reason = `connected, but a ping was not answered (${record.pingFailure})`
      } else if (heard && answered) {
        state = 'online'
        reason = `events both ways in the last ${Math.round(window / MINUTE)} minutes`
        if (record.clockSkewMs !== null) reason += `; but its clock is ${(Math.abs(record.clockSkewMs) / 3_600_000).toFixed(1)} h ${record.clockSkewMs > 0 ? 'ahead' : 'behind'}: enable NTP on the box`
      } else {
        state = 'connected'
        const parts: string[] = []
        if (!heard) parts.push(record.lastSeen === null ? 'no message from the gateway yet' : `no message from the gateway for ${minutes(now - record.lastSeen)}`)
        if (!answered) parts.push(record.lastAnswered === null ? 'no command or ping answered yet' : `no command or ping answered for ${minutes(now - record.lastAnswered)}`)
        reason = `linked but quiet: ${parts.join('; ')}`
      }
    }
    const previous = record.state
    if (state !== previous) {
      record.state = state
      record.since = now
      this.#deps.counters.inc(`fleet.to_${state}`)
      this.#log.info({ gatewayId, state, previous, reason }, 'gateway liveness changed')
      record.reason = reason
      const known = this.#deps.gateways().find((g) => g.id === gatewayId)
      if (known) this.#deps.onChange?.(this.#toView(gatewayId, known.tenantId, record), previous)
    }
    record.reason = reason
  }

  #toView(gatewayId: string, tenantId: string, record: Record): GatewayView {
    return {
      gatewayId,
      tenantId,
      state: record.state,
      reason: record.reason,
      since: record.since,
      lastSeen: record.lastSeen,
      lastAnswered: record.lastAnswered,
      lastRoundTripMs: record.lastRoundTripMs,
      version: record.version,
      slot: record.slot,
      links: [...record.links.values()].sort((a, b) => a.connectorId.localeCompare(b.connectorId)),
      telemetry: record.telemetry,
    }
  }
}

function minutes(ms: number): string {
  const m = Math.floor(ms / MINUTE)
  return m < 1 ? `${Math.round(ms / 1000)} s` : `${m} min`
}
