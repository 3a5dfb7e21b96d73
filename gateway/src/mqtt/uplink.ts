import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { Logger } from 'pino'
import { createEnvelope, decodeMessage, encodeEnvelope, validateData } from '../../protocol/codec.js'
import type { Envelope, MessageData, MessageType, ResultData } from '../../protocol/schemas.js'
import { topics } from '../../protocol/topics.js'
import { backoffDelay, type Clock } from '../core/clock.js'
import type { Counters } from '../core/counters.js'

export interface UplinkOptions {
  /** mqtt://host:1883, mqtts://host:8883 (TLS), or ws(s):// */
  url: string
  gatewayId: string
  username?: string | undefined
  password?: string | undefined
  /** Extra CA certificates (PEM) trusted for mqtts. */
  caPem?: string | undefined
  version: string
  startedAt: number
  keepaliveS?: number
}

export interface UplinkDeps {
  logger: Logger
  clock: Clock
  counters: Counters
  nextSeq: () => number
}

export type CommandEnvelope = Envelope<'cmd.setDnd'> | Envelope<'cmd.resync'>
export type CommandHandler = (command: CommandEnvelope) => Promise<Omit<ResultData, 'correlationId' | 'command'>>

/** Retained messages that describe the present (status, links) rather than an event. */
type RetainedType = 'status' | 'link'

/**
 * The gateway's one outbound connection: MQTT 3.1.1, QoS 1, retained `status` with a last will, commands on
 * `cmd/#` answered on `res/{correlationId}`. A lost broker is state plus backoff, never a crash.
 */
export class MqttUplink {
  readonly #options: UplinkOptions
  readonly #deps: UplinkDeps
  #client: MqttClient | undefined
  #attempt = 0
  #commandHandler: CommandHandler | undefined
  readonly #connectListeners = new Set<() => void>()
  readonly #disconnectListeners = new Set<() => void>()
  /** Whether the link was up at the last connect/close: 'close' also follows every failed reconnect attempt. */
  #linkUp = false
  #lastError = ''

  constructor(options: UplinkOptions, deps: UplinkDeps) {
    this.#options = options
    this.#deps = deps
  }

  get connected(): boolean {
    return this.#client?.connected ?? false
  }

  /** Called after every (re)connect, once the status is published: the place to send a full snapshot. */
  onConnect(listener: () => void): () => void {
    this.#connectListeners.add(listener)
    return () => this.#connectListeners.delete(listener)
  }

  /** Called once when an established link is lost (not on each failed reconnect attempt, not on stop()). */
  onDisconnect(listener: () => void): () => void {
    this.#disconnectListeners.add(listener)
    return () => this.#disconnectListeners.delete(listener)
  }

  onCommand(handler: CommandHandler): void {
    this.#commandHandler = handler
  }

  start(): void {
    if (this.#client) return
    const { gatewayId } = this.#options
    const log = this.#deps.logger
    const options: IClientOptions = {
      clientId: gatewayId,
      protocolVersion: 4,
      clean: true, // stale commands must not be replayed after an outage; the relay re-reconciles from our snapshot
      keepalive: this.#options.keepaliveS ?? 30,
      connectTimeout: 10_000,
      reconnectPeriod: 1000,
      queueQoSZero: false,
      will: this.#will(),
      ...(this.#options.username !== undefined ? { username: this.#options.username } : {}),
      ...(this.#options.password !== undefined ? { password: this.#options.password } : {}),
      ...(this.#options.caPem !== undefined ? { ca: this.#options.caPem } : {}),
    }
    const client = mqtt.connect(this.#options.url, options)
    this.#client = client

    client.on('connect', () => {
      this.#attempt = 0
      // The next outage starts its backoff from the beginning again.
      client.options.reconnectPeriod = 1000
      this.#lastError = ''
      this.#linkUp = true
      log.info({ url: this.#options.url }, 'relay link up')
      this.publishRetained('status', { state: 'online', version: this.#options.version, startedAt: this.#options.startedAt })
      client.subscribe(topics.commandFilter(gatewayId), { qos: 1 }, (err) => {
        if (err) log.error({ err: err.message }, 'subscribing to commands failed')
      })
      for (const listener of this.#connectListeners) listener()
    })
    client.on('reconnect', () => {
      // mqtt.js reads reconnectPeriod each time it schedules; give it jittered exponential backoff.
      client.options.reconnectPeriod = backoffDelay(++this.#attempt, 1000, 30_000)
      client.options.will = this.#will()
    })
    client.on('close', () => {
      const wasUp = this.#linkUp
      this.#linkUp = false
      if (this.#client !== client) return // stop(): not a loss
      if (this.#attempt === 0) log.warn({ url: this.#options.url }, 'relay link down; reconnecting')
      if (wasUp) for (const listener of this.#disconnectListeners) listener()
    })
    client.on('error', (err: Error & { code?: number | string }) => {
      const message = explainMqttError(err)
      this.#deps.counters.inc(err.code === 4 || err.code === 5 ? 'uplink.auth_rejected' : 'uplink.errors')
      if (message !== this.#lastError) log.error({ url: this.#options.url, code: err.code }, message)
      this.#lastError = message
    })
    client.on('message', (topic, payload) => void this.#onMessage(topic, payload))
  }

  publish<T extends Exclude<MessageType, RetainedType | `cmd.${string}`>>(type: T, data: MessageData<T>, topic: string): void {
    this.#send(type, data, topic, false)
  }

  publishRetained<T extends RetainedType>(type: T, data: MessageData<T>, connectorId?: string): void {
    const topic = type === 'status' ? topics.status(this.#options.gatewayId) : topics.link(this.#options.gatewayId, connectorId ?? '')
    this.#send(type, data, topic, true)
  }

  /** Publishes `offline`, waits for it to leave, then disconnects. Idempotent. */
  async stop(reason = 'shutdown'): Promise<void> {
    const client = this.#client
    if (!client) return
    this.#client = undefined
    if (client.connected) {
      const envelope = createEnvelope('status', { state: 'offline', version: this.#options.version, startedAt: this.#options.startedAt, reason }, {
        gatewayId: this.#options.gatewayId,
        seq: this.#deps.nextSeq(),
      })
      await client.publishAsync(topics.status(this.#options.gatewayId), encodeEnvelope(envelope), { qos: 1, retain: true }).catch(() => undefined)
    }
    // Cut off, publishes queued in memory can never be acknowledged: a graceful end would wait for them forever.
    await client.endAsync(!client.connected).catch(() => undefined)
  }

  #send(type: MessageType, data: unknown, topic: string, retain: boolean): void {
    const problem = validateData(type, data)
    if (problem) {
      // A bug on our side: never put on the wire what the relay would drop.
      this.#deps.counters.inc('uplink.invalid_outgoing')
      this.#deps.logger.error({ type, problem }, 'refusing to publish an invalid message')
      return
    }
    const client = this.#client
    if (!client) return
    const envelope = createEnvelope(type as 'status', data as MessageData<'status'>, { gatewayId: this.#options.gatewayId, seq: this.#deps.nextSeq() })
    client.publish(topic, encodeEnvelope(envelope), { qos: type === 'telemetry' ? 0 : 1, retain }, (err) => {
      if (err) this.#deps.counters.inc('uplink.publish_failed')
    })
    this.#deps.counters.inc('uplink.sent')
  }

  async #onMessage(topic: string, payload: Buffer): Promise<void> {
    const log = this.#deps.logger
    const decoded = decodeMessage(topic, payload)
    if (!decoded.ok) {
      this.#deps.counters.inc('uplink.invalid_commands')
      log.warn({ topic, code: decoded.code, reason: decoded.reason }, 'dropped an invalid command')
      return
    }
    const { envelope } = decoded
    if (decoded.topic.kind !== 'command' || decoded.topic.gatewayId !== this.#options.gatewayId) {
      this.#deps.counters.inc('uplink.invalid_commands')
      log.warn({ topic }, 'dropped a message that is not a command for this gateway')
      return
    }
    const command = envelope as CommandEnvelope
    let result: Omit<ResultData, 'correlationId' | 'command'>
    try {
      result = this.#commandHandler ? await this.#commandHandler(command) : { ok: false, error: { code: 'GW_NOT_READY', message: 'gateway is starting' } }
    } catch (err) {
      result = { ok: false, error: { code: 'GW_INTERNAL', message: (err as Error).message.slice(0, 1000) } }
    }
    this.publish('result', { correlationId: command.id, command: command.type, ...result }, topics.result(this.#options.gatewayId, command.id))
  }

  #will(): IClientOptions['will'] {
    const envelope = createEnvelope('status', { state: 'offline', version: this.#options.version, startedAt: this.#options.startedAt, reason: 'connection lost' }, {
      gatewayId: this.#options.gatewayId,
      seq: this.#deps.nextSeq(),
    })
    return { topic: topics.status(this.#options.gatewayId), payload: encodeEnvelope(envelope), qos: 1, retain: true }
  }
}

function explainMqttError(err: Error & { code?: number | string }): string {
  if (err.code === 4 || err.code === 5 || /not authori[sz]ed|bad user ?name or password/i.test(err.message)) {
    return 'relay broker refused the gateway credentials: check gatewayId and password in the relay section of the config'
  }
  if (err.code === 'ECONNREFUSED') return 'relay broker refused the connection: is the relay running and the URL right?'
  if (err.code === 'ENOTFOUND') return 'relay broker host name does not resolve: check the relay URL and DNS'
  return `relay link error: ${err.message}`
}
