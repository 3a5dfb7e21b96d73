import { randomUUID } from 'node:crypto'
import mqtt, { type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import { createEnvelope, decodeMessage, encodeEnvelope } from '#protocol/codec.js'
import type { AnyEnvelope, DirectoryData, EndpointData, LinkData, PingData, ResultData, SetDndData, StatusData, TelemetryData, UpdateCommandData, UpdateProgressData } from '#protocol/schemas.js'
import { topics, type CommandName, type ParsedTopic } from '#protocol/topics.js'
import type { Counters } from '#kernel/counters.js'
import { IngestGuard, type IngestLimits } from './ingest-guard.js'

export interface RelayLinkHandlers {
  /** Whether the gateway exists (messages from unknown gateways are dropped). */
  knowsGateway(gatewayId: string): boolean
  onStatus(gatewayId: string, data: StatusData, retained: boolean, seq: number): Promise<void>
  onLink(gatewayId: string, data: LinkData): Promise<void>
  onEndpoint(gatewayId: string, data: EndpointData, seq: number): Promise<void>
  /** A slice of a directory part (at most directorySliceEntries entries). */
  onDirectory(gatewayId: string, data: DirectoryData): Promise<void>
  /** Every slice of a directory part is applied (once per part, for work that need not run per slice). */
  onDirectoryPart?(gatewayId: string, connectorId: string): Promise<void>
  /** The next command sequence number for a gateway (monotonic across relay restarts). */
  nextCommandSeq(gatewayId: string): Promise<number>
  /**
   * Whether a gateway may be heard now (enrolled, not revoked), and its tenant, derived from its authenticated
   * identity only. When given it replaces knowsGateway; a refused gateway's messages never reach a handler.
   */
  /** The gateway's clock is off by more than MAX_CLOCK_SKEW_MS (positive: ahead of the relay). */
  onClockSkew?(gatewayId: string, skewMs: number | null): void
  gatewayAllowed?(gatewayId: string): { ok: true; tenantId: string } | { ok: false; reason: string }
  /** Every valid message from a gateway, before its handler (liveness: "heard from it"). */
  onActivity?(gatewayId: string, kind: ParsedTopic['kind']): void
  onTelemetry?(gatewayId: string, data: TelemetryData): Promise<void> | void
  /** An update's progress on a box (the `update` topic). */
  onUpdateProgress?(gatewayId: string, data: UpdateProgressData): Promise<void> | void
  /** A command the gateway answered (liveness: the path works both ways), with its round trip. */
  onCommandAnswered?(gatewayId: string, command: CommandName, ok: boolean, roundTripMs: number): void
}

export interface RelayLinkOptions {
  url: string
  username?: string | undefined
  password?: string | undefined
  commandTimeoutMs: number
  /** CA (PEM) the broker's server certificate chains to (mqtts/wss). */
  caPem?: string | undefined
  /** The relay's client certificate (CN `relay:<name>`) and key (PEM), for a mutual-TLS broker. */
  certPem?: string | undefined
  keyPem?: string | undefined
  /**
   * A stable client id gives the relay a persistent session (clean: false): QoS 1 messages wait in the broker
   * while the relay restarts. Without one a random id and a clean session are used.
   */
  clientId?: string | undefined
  /** What one gateway may send (see IngestGuard); defaults are well above a real box. */
  limits?: Partial<IngestLimits> | undefined
}

interface PendingCommand {
  resolve(result: ResultData): void
  reject(err: Error): void
  timer: NodeJS.Timeout
  gatewayId: string
  name: CommandName
  sentAt: number
}

/**
 * The relay's MQTT client: reads every gateway's messages, validates them, hands them on in order per gateway,
 * and sends commands with a correlation id, resolving when the gateway's result arrives.
 */
/** Beyond this, a gateway's clock is reported as wrong (TLS and the event log's times need it right). */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000

export class RelayLink {
  readonly #options: RelayLinkOptions
  readonly #handlers: RelayLinkHandlers
  readonly #log: Logger
  readonly #counters: Counters
  readonly #pending = new Map<string, PendingCommand>()
  readonly #queues = new Map<string, Promise<void>>()
  /** Messages per gateway queued and not yet handled. */
  readonly #queued = new Map<string, number>()
  readonly #guard: IngestGuard
  #client: MqttClient | undefined
  #lastError = ''
  /** Gateways whose clock is off, with when we last said so. */
  readonly #clockWarned = new Map<string, number>()

  constructor(options: RelayLinkOptions, handlers: RelayLinkHandlers, deps: { logger: Logger; counters: Counters }) {
    this.#options = options
    this.#handlers = handlers
    this.#log = deps.logger
    this.#counters = deps.counters
    this.#guard = new IngestGuard(options.limits ?? {}, { logger: deps.logger, counters: deps.counters })
  }

  get connected(): boolean {
    return this.#client?.connected ?? false
  }

  async start(): Promise<void> {
    if (this.#client) return
    const client = mqtt.connect(this.#options.url, {
      clientId: this.#options.clientId ?? `relay-${randomUUID().slice(0, 8)}`,
      protocolVersion: 4,
      clean: this.#options.clientId === undefined,
      reconnectPeriod: 1000,
      ...(this.#options.certPem !== undefined ? { cert: this.#options.certPem } : {}),
      ...(this.#options.keyPem !== undefined ? { key: this.#options.keyPem } : {}),
      ...(this.#options.username !== undefined ? { username: this.#options.username } : {}),
      ...(this.#options.password !== undefined ? { password: this.#options.password } : {}),
      ...(this.#options.caPem !== undefined ? { ca: this.#options.caPem } : {}),
    })
    this.#client = client
    client.on('message', (topic, payload, packet) => this.#enqueue(topic, payload, packet.retain))
    client.on('error', (err) => {
      if (this.#client !== client) return // stopping: errors of a closing socket are expected
      if (err.message !== this.#lastError) this.#log.error({ url: this.#options.url, err: err.message }, 'relay broker link error')
      this.#lastError = err.message
    })
    client.on('connect', () => {
      this.#lastError = ''
      this.#log.info({ url: this.#options.url }, 'relay broker link up')
      client.subscribe(topics.relayFilter(), { qos: 1 }, (err) => {
        if (err) this.#log.error({ err: err.message }, 'subscribing to gateway topics failed')
      })
    })
    await new Promise<void>((resolve) => {
      if (client.connected) resolve()
      else client.once('connect', () => resolve())
    })
  }

  async stop(): Promise<void> {
    const client = this.#client
    this.#client = undefined
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer)
      pending.reject(new Error('relay stopping'))
      this.#pending.delete(id)
    }
    if (client) await client.endAsync(false).catch(() => undefined)
    await Promise.all(this.#queues.values())
  }

  async sendSetDnd(gatewayId: string, data: SetDndData): Promise<ResultData> {
    return this.#send(gatewayId, 'setDnd', data)
  }

  async sendResync(gatewayId: string, reason: string): Promise<ResultData> {
    return this.#send(gatewayId, 'resync', { reason })
  }

  /** Asks the gateway to answer at once: proves the path both ways (liveness). */
  async sendPing(gatewayId: string): Promise<ResultData> {
    return this.#send(gatewayId, 'ping', { sentAt: Date.now() })
  }

  /** Asks the gateway to install a release; the result says whether it accepted, progress follows on its update topic. */
  async sendUpdate(gatewayId: string, data: UpdateCommandData): Promise<ResultData> {
    return this.#send(gatewayId, 'update', data)
  }

  async #send(gatewayId: string, name: CommandName, data: SetDndData | { reason: string } | PingData | UpdateCommandData): Promise<ResultData> {
    const client = this.#client
    if (!client?.connected) throw new Error('relay is not connected to the broker')
    const seq = await this.#handlers.nextCommandSeq(gatewayId)
    const envelope = name === 'setDnd'
      ? createEnvelope('cmd.setDnd', data as SetDndData, { gatewayId, seq })
      : name === 'resync'
        ? createEnvelope('cmd.resync', data as { reason: string }, { gatewayId, seq })
        : name === 'update'
          ? createEnvelope('cmd.update', data as UpdateCommandData, { gatewayId, seq })
          : createEnvelope('cmd.ping', data as PingData, { gatewayId, seq })
    return new Promise<ResultData>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(envelope.id)
        this.#counters.inc('relay.command_timeouts')
        reject(new Error(`gateway ${gatewayId} did not answer ${name} within ${this.#options.commandTimeoutMs} ms`))
      }, this.#options.commandTimeoutMs)
      timer.unref()
      this.#pending.set(envelope.id, { resolve, reject, timer, gatewayId, name, sentAt: Date.now() })
      client.publish(topics.command(gatewayId, name), encodeEnvelope(envelope), { qos: 1 }, (err) => {
        if (!err) return
        clearTimeout(timer)
        this.#pending.delete(envelope.id)
        reject(err)
      })
    })
  }

  /** Messages of one gateway are handled one after another (their order matters); gateways run in parallel. */
  #enqueue(topic: string, payload: Buffer, retained: boolean): void {
    const decoded = decodeMessage(topic, payload)
    if (!decoded.ok) {
      this.#counters.inc('relay.invalid_messages')
      this.#counters.inc(`relay.invalid.${decoded.code}`)
      this.#log.warn({ topic: topic.slice(0, 200), code: decoded.code, reason: decoded.reason }, 'dropped an invalid message')
      return
    }
    const { topic: parsed, envelope } = decoded
    if (parsed.kind === 'command') return // our own commands, echoed by the wildcard subscription
    const allowed = this.#handlers.gatewayAllowed
      ? this.#handlers.gatewayAllowed(parsed.gatewayId)
      : this.#handlers.knowsGateway(parsed.gatewayId) ? { ok: true as const } : { ok: false as const, reason: 'unknown gateway' }
    if (!allowed.ok) {
      this.#counters.inc('relay.unknown_gateway_messages')
      this.#counters.inc('relay.refused_gateway_messages')
      this.#log.warn({ gatewayId: parsed.gatewayId, kind: parsed.kind, why: allowed.reason }, 'dropped a message from a gateway that may not be heard; create or enroll the gateway first')
      return
    }
    const gatewayId = parsed.gatewayId
    const queued = this.#queued.get(gatewayId) ?? 0
    if (queued >= this.#guard.limits.queuedPerGateway) {
      this.#guard.refuse(gatewayId, 'queue', `gateway ${gatewayId} has ${queued} messages waiting to be handled; newer ones are dropped until the relay catches up. A box does not send this fast: check its log`, { kind: parsed.kind })
      return
    }
    const admitted = this.#guard.admit(gatewayId, envelope)
    if (!admitted.ok) {
      this.#guard.refuse(gatewayId, admitted.what, admitted.message, { kind: parsed.kind })
      return
    }
    this.#handlers.onActivity?.(parsed.gatewayId, parsed.kind)
    // A birth and telemetry are stamped as they are sent (replayed state changes are old on purpose): their age
    // is the box's clock error, plus a little transit.
    if (!retained && (envelope.type === 'status' || envelope.type === 'telemetry')) this.#checkClock(parsed.gatewayId, envelope.ts)
    const previous = this.#queues.get(parsed.gatewayId) ?? Promise.resolve()
    this.#queued.set(gatewayId, queued + 1)
    const next = previous.then(() => this.#dispatch(parsed, envelope, retained)).catch((err: unknown) => {
      this.#counters.inc('relay.handler_errors')
      this.#log.error({ gatewayId: parsed.gatewayId, kind: parsed.kind, err: (err as Error).message }, 'handling a gateway message failed')
    })
    this.#queues.set(parsed.gatewayId, next)
    void next.then(() => {
      const left = (this.#queued.get(gatewayId) ?? 1) - 1
      if (left > 0) this.#queued.set(gatewayId, left)
      else this.#queued.delete(gatewayId)
      if (this.#queues.get(parsed.gatewayId) === next) this.#queues.delete(parsed.gatewayId)
    })
  }

  /**
   * A directory part is applied in slices with a turn of the event loop between them, so a large directory never
   * holds up other gateways, the admin API or /healthz (one 12,000-entry message once stalled the relay for 10 s).
   */
  async #applyDirectory(gatewayId: string, data: DirectoryData): Promise<void> {
    const slice = this.#guard.limits.directorySliceEntries
    for (let i = 0; i < data.entries.length || i === 0; i += slice) {
      await this.#handlers.onDirectory(gatewayId, { connectorId: data.connectorId, entries: data.entries.slice(i, i + slice) })
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    await this.#handlers.onDirectoryPart?.(gatewayId, data.connectorId)
    if ((data.part ?? 1) === (data.parts ?? 1)) this.#log.info({ gatewayId, connector: data.connectorId, parts: data.parts ?? 1 }, 'PBX directory received')
  }

  #checkClock(gatewayId: string, sentAt: number): void {
    const skewMs = sentAt - Date.now()
    if (Math.abs(skewMs) <= MAX_CLOCK_SKEW_MS) {
      if (this.#clockWarned.delete(gatewayId)) {
        this.#log.info({ gatewayId }, 'gateway clock is right again')
        this.#handlers.onClockSkew?.(gatewayId, null)
      }
      return
    }
    this.#counters.inc('relay.gateway_clock_skew')
    const last = this.#clockWarned.get(gatewayId)
    if (last !== undefined && Date.now() - last < 10 * 60_000) return
    this.#clockWarned.set(gatewayId, Date.now())
    const hours = (Math.abs(skewMs) / 3_600_000).toFixed(1)
    this.#log.warn({ gatewayId, skewMs }, `gateway ${gatewayId}'s clock is ${hours} h ${skewMs > 0 ? 'ahead of' : 'behind'} the relay: the times it reports are wrong and its certificate checks will fail; enable NTP on the box (timedatectl set-ntp true) or set its time`)
    this.#handlers.onClockSkew?.(gatewayId, skewMs)
  }

  async #dispatch(topic: ParsedTopic, envelope: AnyEnvelope, retained: boolean): Promise<void> {
    this.#counters.inc('relay.messages')
    switch (envelope.type) {
      case 'status':
        return this.#handlers.onStatus(topic.gatewayId, envelope.data, retained, envelope.seq)
      case 'link':
        return this.#handlers.onLink(topic.gatewayId, envelope.data)
      case 'endpoint':
        return this.#handlers.onEndpoint(topic.gatewayId, envelope.data, envelope.seq)
      case 'directory':
        return this.#applyDirectory(topic.gatewayId, envelope.data)
      case 'result': {
        const pending = this.#pending.get(envelope.data.correlationId)
        if (!pending) {
          // A late answer after the timeout is normal; a stream of answers to nothing is not.
          this.#guard.refuse(topic.gatewayId, 'unsolicited_result', `gateway ${topic.gatewayId} answered a command the relay is not waiting for (late after a timeout, or never sent); ignored`, { command: envelope.data.command })
          return
        }
        if (pending.gatewayId !== topic.gatewayId) {
          // A result can only answer a command sent to the same gateway: another gateway guessing ids is ignored.
          this.#counters.inc('relay.foreign_results')
          this.#log.warn({ gatewayId: topic.gatewayId, expected: pending.gatewayId }, 'ignored a result for a command sent to another gateway')
          return
        }
        clearTimeout(pending.timer)
        this.#pending.delete(envelope.data.correlationId)
        this.#handlers.onCommandAnswered?.(topic.gatewayId, pending.name, envelope.data.ok, Date.now() - pending.sentAt)
        pending.resolve(envelope.data)
        return
      }
      case 'update':
        await this.#handlers.onUpdateProgress?.(topic.gatewayId, envelope.data)
        return
      case 'telemetry':
        this.#log.debug({ gatewayId: topic.gatewayId, telemetry: envelope.data }, 'telemetry')
        await this.#handlers.onTelemetry?.(topic.gatewayId, envelope.data)
        return
      default:
        return
    }
  }
}
