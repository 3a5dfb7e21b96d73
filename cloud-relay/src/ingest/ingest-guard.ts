import type { Logger } from 'pino'
import type { AnyEnvelope } from '#protocol/schemas.js'
import type { Counters } from '#kernel/counters.js'

/**
 * What one gateway may make the relay do, so that no gateway (a faulty box or a stolen certificate) can take the
 * relay's event loop, memory or database from the others. Every figure is well above what a real box sends.
 */
export interface IngestLimits {
  /** Directory parts per gateway per minute: a 3,000-user IP Office is 6 parts, a resync sends them again. */
  directoryPerMinute: number
  /** Telemetry messages per gateway per minute: a box sends one every 5 s at the most (telemetryIntervalS ≥ 5). */
  telemetryPerMinute: number
  /** Status messages per gateway per minute: a birth per connect, a goodbye per stop. */
  statusPerMinute: number
  /** Link messages per gateway per minute: a link changes state a few times per reconnect. */
  linkPerMinute: number
  /** Update progress messages per gateway per minute: a box reports a download at most every 2 s, and each state once. */
  updatePerMinute: number
  /** Distinct connectors per gateway: a box serves one to a few PBXs. */
  connectorsPerGateway: number
  /** Distinct extensions per gateway (events and directories): IP Office 3,000 per system, innovaphone more. */
  endpointsPerGateway: number
  /** Messages of one gateway waiting to be handled; beyond this they are dropped (memory). */
  queuedPerGateway: number
  /** Directory entries applied between two turns of the event loop. */
  directorySliceEntries: number
  /** A time further ahead of the relay's clock than this is taken as the relay's now (the box's clock is wrong). */
  maxFutureMs: number
}

export const DEFAULT_INGEST_LIMITS: IngestLimits = {
  directoryPerMinute: 60,
  telemetryPerMinute: 12,
  statusPerMinute: 30,
  linkPerMinute: 120,
  updatePerMinute: 60,
  connectorsPerGateway: 32,
  endpointsPerGateway: 50_000,
  queuedPerGateway: 20_000,
  directorySliceEntries: 25,
  maxFutureMs: 5 * 60_000,
}

export type Admission = { ok: true } | { ok: false; what: string; message: string }

interface Bucket {
  tokens: number
  at: number
}

interface GatewayUse {
  buckets: Map<string, Bucket>
  connectors: Set<string>
  endpoints: Set<string>
  /** When each kind of refusal was last logged: one line per kind per minute. */
  warned: Map<string, number>
}

const WARN_EVERY_MS = 60_000

/**
 * Admits or refuses each decoded message of an authenticated gateway before it is queued: per-gateway rates
 * (token buckets, a minute's worth as burst), distinct connectors and extensions, and times from the future.
 * Refusals are counted always and logged once per gateway and kind per minute, in words.
 */
export class IngestGuard {
  readonly #limits: IngestLimits
  readonly #log: Logger
  readonly #counters: Counters
  readonly #now: () => number
  readonly #use = new Map<string, GatewayUse>()

  constructor(limits: Partial<IngestLimits>, deps: { logger: Logger; counters: Counters; now?: () => number }) {
    this.#limits = { ...DEFAULT_INGEST_LIMITS, ...limits }
    this.#log = deps.logger
    this.#counters = deps.counters
    this.#now = deps.now ?? Date.now
  }

  get limits(): Readonly<IngestLimits> {
    return this.#limits
  }

  admit(gatewayId: string, envelope: AnyEnvelope): Admission {
    const use = this.#gateway(gatewayId)
    const perMinute = { directory: this.#limits.directoryPerMinute, telemetry: this.#limits.telemetryPerMinute, status: this.#limits.statusPerMinute, link: this.#limits.linkPerMinute, update: this.#limits.updatePerMinute }
    const rate = (perMinute as Record<string, number | undefined>)[envelope.type]
    if (rate !== undefined && !this.#take(use, envelope.type, rate)) {
      return { ok: false, what: `${envelope.type}_rate`, message: `gateway ${gatewayId} sent more than ${rate} ${envelope.type} messages in a minute; the excess is dropped. A box does not do this: check its software version and log` }
    }
    const connectorId = envelope.type === 'link' || envelope.type === 'endpoint' || envelope.type === 'directory' ? envelope.data.connectorId : undefined
    if (connectorId !== undefined && !use.connectors.has(connectorId)) {
      if (use.connectors.size >= this.#limits.connectorsPerGateway) {
        return { ok: false, what: 'connectors', message: `gateway ${gatewayId} names more than ${this.#limits.connectorsPerGateway} connectors; messages of connector ${connectorId.slice(0, 64)} are dropped. Remove connectors the box no longer has` }
      }
      use.connectors.add(connectorId)
    }
    if (envelope.type === 'endpoint' || envelope.type === 'directory') {
      const ids = envelope.type === 'endpoint' ? [envelope.data.endpointId] : envelope.data.entries.map((e) => e.endpointId)
      const fresh = new Set(ids.map((id) => `${envelope.data.connectorId}/${id}`).filter((k) => !use.endpoints.has(k)))
      if (use.endpoints.size + fresh.size > this.#limits.endpointsPerGateway) {
        return { ok: false, what: 'endpoints', message: `gateway ${gatewayId} names more than ${this.#limits.endpointsPerGateway} extensions; a ${envelope.type} message with ${fresh.size} new ones is dropped. No PBX the product serves has that many on one box` }
      }
      for (const k of fresh) use.endpoints.add(k)
    }
    this.#clampFuture(gatewayId, envelope)
    return { ok: true }
  }

  /** Counts a refusal and logs it, once per gateway and kind per minute. */
  refuse(gatewayId: string, what: string, message: string, fields: Record<string, unknown> = {}): void {
    this.#counters.inc('relay.refused_messages')
    this.#counters.inc(`relay.refused.${what}`)
    this.#warn(gatewayId, what, message, fields)
  }

  #warn(gatewayId: string, what: string, message: string, fields: Record<string, unknown> = {}): void {
    const use = this.#gateway(gatewayId)
    const now = this.#now()
    const last = use.warned.get(what)
    if (last !== undefined && now - last < WARN_EVERY_MS) return
    use.warned.set(what, now)
    this.#log.warn({ gatewayId, refused: what, ...fields }, message)
  }

  /** A gateway that may no longer be heard (revoked, deleted): forget what it used. */
  forget(gatewayId: string): void {
    this.#use.delete(gatewayId)
  }

  #gateway(gatewayId: string): GatewayUse {
    let use = this.#use.get(gatewayId)
    if (!use) {
      use = { buckets: new Map(), connectors: new Set(), endpoints: new Set(), warned: new Map() }
      this.#use.set(gatewayId, use)
    }
    return use
  }

  #take(use: GatewayUse, kind: string, perMinute: number): boolean {
    const now = this.#now()
    const bucket = use.buckets.get(kind) ?? { tokens: perMinute, at: now }
    bucket.tokens = Math.min(perMinute, bucket.tokens + ((now - bucket.at) * perMinute) / 60_000)
    bucket.at = now
    use.buckets.set(kind, bucket)
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  /** Times ahead of the relay (a box clock set wrong) become the relay's now: stored, they would sort as the future. */
  #clampFuture(gatewayId: string, envelope: AnyEnvelope): void {
    const latest = this.#now() + this.#limits.maxFutureMs
    const clamp = (at: number): number => {
      if (at <= latest) return at
      this.#counters.inc('relay.future_times_clamped')
      this.#warn(gatewayId, 'future_time', `gateway ${gatewayId} reports times up to ${Math.round((at - latest) / 60_000) + Math.round(this.#limits.maxFutureMs / 60_000)} minutes ahead of the relay; they are taken as the relay's time. Set the box's clock (NTP)`)
      return this.#now()
    }
    if (envelope.type === 'endpoint') envelope.data.changedAt = clamp(envelope.data.changedAt)
    else if (envelope.type === 'link') envelope.data.since = clamp(envelope.data.since)
    else if (envelope.type === 'result' && envelope.data.endpoint) envelope.data.endpoint.changedAt = clamp(envelope.data.endpoint.changedAt)
  }
}
