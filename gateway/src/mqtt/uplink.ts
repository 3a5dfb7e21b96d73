import { Readable } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { MqttClient, type IClientOptions, type IStore, type Packet } from 'mqtt'
import type { Logger } from 'pino'
import { createEnvelope, decodeMessage, encodeEnvelope, validateData } from '../../protocol/codec.js'
import type { Envelope, MessageData, MessageType, ResultData } from '../../protocol/schemas.js'
import { topics } from '../../protocol/topics.js'
import { backoffDelay, type Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import type { OutboxStore } from '../outbox/outbox-store.js'
import { openBrokerStream, parseBrokerUrl, parseProxyUrl, type BrokerTarget, type ClientTls } from './transport.js'

export type { ClientTls } from './transport.js'

export interface UplinkOptions {
  /**
   * Broker URLs tried in order (mqtt://, mqtts://, ws://, wss://), e.g. `mqtts://relay:8883` then
   * `wss://relay:443/mqtt`. After `attemptsPerUrl` failed attempts on one the next is tried; the one that worked
   * is kept for later reconnects.
   */
  urls?: readonly string[]
  /** A single broker URL (older callers); `urls` wins when both are given. */
  url?: string
  gatewayId: string
  username?: string | undefined
  password?: string | undefined
  /** Extra CA certificates (PEM) trusted for mqtts/wss when there is no client certificate. */
  caPem?: string | undefined
  /** Mutual TLS: the box's key and certificate and the CA of the broker, used for mqtts and wss. */
  tls?: ClientTls | undefined
  /** http://[user:pass@]proxy:3128 — every transport is tunnelled through it with HTTP CONNECT. */
  proxyUrl?: string | undefined
  /** Failed attempts on one URL before the next is tried (default 3). */
  attemptsPerUrl?: number
  version: string
  /** The root file system slot the box booted ("A"/"B"), reported in its status; absent without A/B slots. */
  slot?: string | undefined
  startedAt: number
  keepaliveS?: number
  connectTimeoutMs?: number
  /** Reconnect backoff (jittered, doubling): first delay and ceiling in ms (defaults 1,000 and 30,000). */
  reconnectMinMs?: number
  reconnectMaxMs?: number
  /** QoS 1 publishes handed to mqtt.js and not yet acknowledged, at most (default 1,000). */
  inflightWindow?: number
}

export interface UplinkDeps {
  logger: Logger
  clock: Clock
  counters: Counters
  nextSeq: () => number
  /** The durable outbox: `publishDurable` goes through it and it is replayed after every connect. */
  outbox?: OutboxStore | undefined
}

export type CommandEnvelope = Envelope<'cmd.setDnd'> | Envelope<'cmd.resync'> | Envelope<'cmd.update'>
export type CommandHandler = (command: CommandEnvelope) => Promise<Omit<ResultData, 'correlationId' | 'command'>>

/** Retained messages that describe the present (status, links) rather than an event. */
type RetainedType = 'status' | 'link'
/** What may go through the outbox: state, not events about the link itself or answers. */
export type DurableType = 'endpoint' | 'directory' | 'link'

export interface DrainReport {
  records: number
  ms: number
}

/** One QoS 1 publish waiting for the in-flight window: an outbox record (by seq) or a one-off message. */
type QueueItem = { seq: number } | { topic: string; payload: Buffer; retain: boolean }

/**
 * The gateway's one outbound connection: MQTT 3.1.1, QoS 1, retained `status` with a last will, commands on
 * `cmd/#` answered on `res/{correlationId}`. State changes go through the durable outbox; after every connect
 * the outbox is replayed in seq order, then the connect listeners run (the snapshot). Nothing is handed to
 * mqtt.js while the link is down, and mqtt.js keeps nothing for resending: the outbox is the one truth.
 * A lost broker is state plus backoff, never a crash.
 */
export class MqttUplink {
  readonly #options: UplinkOptions
  readonly #deps: UplinkDeps
  readonly #targets: BrokerTarget[]
  #client: MqttClient | undefined
  #attempt = 0
  #commandHandler: CommandHandler | undefined
  readonly #connectListeners = new Set<() => void>()
  readonly #disconnectListeners = new Set<() => void>()
  readonly #drainListeners = new Set<(report: DrainReport) => void>()
  /** Whether the link was up at the last connect/close: 'close' also follows every failed reconnect attempt. */
  #linkUp = false
  #lastError = ''

  /** Which URL the next attempt uses, failures on it so far, and the one that last worked. */
  #urlIndex = 0
  #failuresOnUrl = 0
  #workingIndex: number | undefined
  #attemptIndex = 0
  /** The current attempt finished its TLS handshake (the broker had a chance to look at our certificate). */
  #attemptSecured = false

  /** Bumped on every connect and close, so callbacks of an earlier connection change nothing. */
  #generation = 0
  #queue: QueueItem[] = []
  #head = 0
  #inflight = 0
  readonly #window: number
  /** Outbox records replayed after this connect and not yet acknowledged (or superseded). */
  #replay: { seqs: Set<number>; total: number; started: number; resolved: number } | undefined

  constructor(options: UplinkOptions, deps: UplinkDeps) {
    this.#options = options
    this.#deps = deps
    const urls = options.urls && options.urls.length > 0 ? options.urls : options.url ? [options.url] : []
    if (urls.length === 0) throw new Error('uplink needs at least one broker URL (relay.url)')
    this.#targets = urls.map(parseBrokerUrl)
    if (options.proxyUrl) parseProxyUrl(options.proxyUrl)
    this.#window = Math.max(1, options.inflightWindow ?? 1000)
  }

  get connected(): boolean {
    return this.#client?.connected ?? false
  }

  /** The broker URL of the current (or last working) connection. */
  get transportUrl(): string | undefined {
    const index = this.#workingIndex
    return index === undefined ? undefined : this.#targets[index]?.url
  }

  /** Called after every (re)connect, once the status is published and the outbox replay queued: send the snapshot here. */
  onConnect(listener: () => void): () => void {
    this.#connectListeners.add(listener)
    return () => this.#connectListeners.delete(listener)
  }

  /** Called once when an established link is lost (not on each failed reconnect attempt, not on stop()). */
  onDisconnect(listener: () => void): () => void {
    this.#disconnectListeners.add(listener)
    return () => this.#disconnectListeners.delete(listener)
  }

  /** Called when every record the outbox held at a connect has been acknowledged by the broker. */
  onDrained(listener: (report: DrainReport) => void): () => void {
    this.#drainListeners.add(listener)
    return () => this.#drainListeners.delete(listener)
  }

  #slot(): { slot?: string } {
    return this.#options.slot !== undefined ? { slot: this.#options.slot } : {}
  }

  onCommand(handler: CommandHandler): void {
    this.#commandHandler = handler
  }

  start(): void {
    if (this.#client) return
    const { gatewayId } = this.#options
    const log = this.#deps.logger
    const minMs = this.#options.reconnectMinMs ?? 1000
    const maxMs = this.#options.reconnectMaxMs ?? 30_000
    const options: IClientOptions = {
      clientId: gatewayId,
      protocolId: 'MQTT',
      protocolVersion: 4,
      clean: true, // stale commands must not be replayed after an outage; the relay re-reconciles from our snapshot
      keepalive: this.#options.keepaliveS ?? 30,
      connectTimeout: this.#options.connectTimeoutMs ?? 10_000,
      reconnectPeriod: minMs,
      queueQoSZero: false,
      resubscribe: false, // subscribed on every connect below
      outgoingStore: new NoResendStore(),
      // mqtt-packet's default pre-builds 65,536 two-byte Buffers for packet ids (6.5 MB of the box's heap, measured
      // with bench/gateway-memory.ts); a box sends a few messages a second and builds each id when it needs it.
      writeCache: false,
      will: this.#will(),
      ...(this.#options.username !== undefined ? { username: this.#options.username } : {}),
      ...(this.#options.password !== undefined ? { password: this.#options.password } : {}),
    }
    const client = new MqttClient((c) => this.#openStream(c) as unknown as ReturnType<ConstructorParameters<typeof MqttClient>[0]>, options)
    this.#client = client

    client.on('connect', () => {
      this.#attempt = 0
      // The next outage starts its backoff from the beginning again.
      client.options.reconnectPeriod = minMs
      this.#lastError = ''
      this.#linkUp = true
      this.#failuresOnUrl = 0
      const target = this.#targets[this.#attemptIndex]
      if (this.#workingIndex !== this.#attemptIndex && this.#targets.length > 1) {
        log.info({ url: target?.url, transport: target?.protocol, proxy: this.#options.proxyUrl ? redactProxy(this.#options.proxyUrl) : undefined }, 'relay transport in use')
      }
      this.#workingIndex = this.#attemptIndex
      log.info({ url: target?.url }, 'relay link up')
      this.#generation += 1
      this.#sendNow('status', { state: 'online', version: this.#options.version, startedAt: this.#options.startedAt, ...this.#slot() }, topics.status(gatewayId), true)
      client.subscribe(topics.commandFilter(gatewayId), { qos: 1 }, (err) => {
        if (err) log.error({ err: err.message }, 'subscribing to commands failed')
      })
      this.#startReplay()
      for (const listener of this.#connectListeners) listener()
      this.#pump()
    })
    client.on('reconnect', () => {
      // mqtt.js reads reconnectPeriod each time it schedules; give it jittered exponential backoff.
      client.options.reconnectPeriod = backoffDelay(++this.#attempt, minMs, maxMs)
      client.options.will = this.#will()
    })
    client.on('close', () => {
      const wasUp = this.#linkUp
      this.#linkUp = false
      this.#generation += 1
      this.#queue = []
      this.#head = 0
      this.#inflight = 0
      this.#replay = undefined
      if (this.#client !== client) return // stop(): not a loss
      if (!wasUp && this.#attemptSecured && this.#options.tls) {
        // TLS 1.3: the broker checks our certificate after the handshake and just closes (Node) or alerts (OpenSSL).
        this.#deps.counters.inc('uplink.closed_before_connack')
        const message = 'relay broker closed the connection right after the TLS handshake, before answering MQTT CONNECT: it most likely refused this box\'s client certificate (unknown, expired or revoked); enroll the box again with a new code from the cloud console'
        if (message !== this.#lastError) log.error({ url: this.#targets[this.#attemptIndex]?.url }, message)
        this.#lastError = message
      }
      if (!wasUp) this.#attemptFailed()
      if (this.#attempt === 0) log.warn({ url: this.#targets[this.#attemptIndex]?.url }, 'relay link down; reconnecting')
      if (wasUp) for (const listener of this.#disconnectListeners) listener()
    })
    client.on('error', (err: Error & { code?: number | string }) => {
      const message = explainMqttError(err)
      this.#deps.counters.inc(err.code === 4 || err.code === 5 ? 'uplink.auth_rejected' : isTlsRefusal(err) ? 'uplink.tls_rejected' : 'uplink.errors')
      if (message !== this.#lastError) log.error({ url: this.#targets[this.#attemptIndex]?.url, code: err.code }, message)
      this.#lastError = message
    })
    client.on('message', (topic, payload) => void this.#onMessage(topic, payload))
  }

  /**
   * A state change that must reach the relay: stored in the outbox under `key` (replacing an older record for the
   * same key), sent when the link is up, removed when the broker acknowledges it. Resolves true once on disk,
   * false if it was invalid or the disk refused it (both logged). Without an outbox it is sent like `publish`.
   */
  async publishDurable<T extends DurableType>(key: string, type: T, data: MessageData<T>, topic: string, retain = false): Promise<boolean> {
    const envelope = this.#envelope(type, data)
    if (!envelope) return false
    const outbox = this.#deps.outbox
    const payload = encodeEnvelope(envelope)
    if (!outbox) {
      this.#enqueue({ topic, payload, retain })
      return true
    }
    const written = outbox.put(key, { seq: envelope.seq, topic, payload, retain })
    if (this.connected) {
      this.#queue.push({ seq: envelope.seq })
      this.#pump()
    }
    return written.then(() => true, () => false) // the outbox logs and counts write failures
  }

  /**
   * Sends when the link is up, dropped otherwise (counted). Telemetry goes at QoS 0; command results at once; other
   * types queue behind the outbox replay (the snapshot uses this).
   */
  publish<T extends Exclude<MessageType, RetainedType | `cmd.${string}`>>(type: T, data: MessageData<T>, topic: string): void {
    if (type === 'telemetry' || type === 'result') {
      this.#sendNow(type, data, topic, false)
      return
    }
    const envelope = this.#envelope(type, data)
    if (envelope) this.#enqueue({ topic, payload: encodeEnvelope(envelope), retain: false })
  }

  publishRetained<T extends RetainedType>(type: T, data: MessageData<T>, connectorId?: string): void {
    const topic = type === 'status' ? topics.status(this.#options.gatewayId) : topics.link(this.#options.gatewayId, connectorId ?? '')
    if (type === 'status') {
      this.#sendNow(type, data, topic, true)
      return
    }
    const envelope = this.#envelope(type, data)
    if (envelope) this.#enqueue({ topic, payload: encodeEnvelope(envelope), retain: true })
  }

  /** Publishes `offline`, waits briefly for it to leave, then disconnects. Idempotent. Unacknowledged records stay in the outbox. */
  async stop(reason = 'shutdown'): Promise<void> {
    const client = this.#client
    if (!client) return
    this.#client = undefined
    if (client.connected) {
      const envelope = createEnvelope('status', { state: 'offline', version: this.#options.version, startedAt: this.#options.startedAt, reason, ...this.#slot() }, {
        gatewayId: this.#options.gatewayId,
        seq: this.#deps.nextSeq(),
      })
      await withTimeout(client.publishAsync(topics.status(this.#options.gatewayId), encodeEnvelope(envelope), { qos: 1, retain: true }), 2000)
    }
    // Cut off, publishes in flight can never be acknowledged: a graceful end would wait for them. They stay in the outbox.
    await withTimeout(client.endAsync(!client.connected), 2000)
    if (!client.disconnected) await client.endAsync(true).catch(() => undefined)
  }

  /**
   * A renewed client certificate. The open connection keeps the one it was made with (still valid: renewal happens
   * at 2/3 of the lifetime); every later connection uses this one.
   */
  renewTls(tls: ClientTls): void {
    this.#options.tls = tls
    this.#deps.logger.info('client certificate renewed: used from the next connection')
  }

  #openStream(client: MqttClient): ReturnType<typeof openBrokerStream> {
    this.#attemptIndex = this.#urlIndex
    const target = this.#targets[this.#attemptIndex] as BrokerTarget
    this.#attemptSecured = false
    const stream = openBrokerStream(client, target, {
      tls: this.#options.tls,
      caPem: this.#options.caPem,
      proxyUrl: this.#options.proxyUrl,
      connectTimeoutMs: this.#options.connectTimeoutMs ?? 10_000,
    })
    if (stream instanceof TLSSocket) stream.once('secureConnect', () => (this.#attemptSecured = true))
    return stream
  }

  #attemptFailed(): void {
    this.#failuresOnUrl += 1
    const limit = Math.max(1, this.#options.attemptsPerUrl ?? 3)
    if (this.#targets.length < 2 || this.#failuresOnUrl < limit) return
    const from = this.#targets[this.#urlIndex]
    this.#urlIndex = (this.#urlIndex + 1) % this.#targets.length
    this.#failuresOnUrl = 0
    this.#attempt = 0
    if (this.#client) this.#client.options.reconnectPeriod = this.#options.reconnectMinMs ?? 1000
    this.#deps.counters.inc('uplink.transport_switches')
    this.#deps.logger.warn({ from: from?.url, to: this.#targets[this.#urlIndex]?.url, failures: limit },
      'relay transport failed repeatedly; trying the next one (set relay.fallbackUrls to change the order)')
  }

  #envelope<T extends MessageType>(type: T, data: unknown): Envelope<T> | undefined {
    const problem = validateData(type, data)
    if (problem) {
      // A bug on our side: never put on the wire what the relay would drop.
      this.#deps.counters.inc('uplink.invalid_outgoing')
      this.#deps.logger.error({ type, problem }, 'refusing to publish an invalid message')
      return undefined
    }
    return createEnvelope(type, data as MessageData<T>, { gatewayId: this.#options.gatewayId, seq: this.#deps.nextSeq() })
  }

  /** Straight to mqtt.js, past the window: birth, telemetry, command results. Only while connected. */
  #sendNow(type: MessageType, data: unknown, topic: string, retain: boolean): void {
    const client = this.#client
    if (!client?.connected) {
      this.#deps.counters.inc('uplink.dropped_offline')
      return
    }
    const envelope = this.#envelope(type, data)
    if (!envelope) return
    client.publish(topic, encodeEnvelope(envelope), { qos: type === 'telemetry' ? 0 : 1, retain }, (err) => {
      if (err) this.#deps.counters.inc('uplink.publish_failed')
    })
    this.#deps.counters.inc('uplink.sent')
  }

  #enqueue(item: QueueItem): void {
    if (!this.connected) {
      // The snapshot on the next connect carries the current state; mqtt.js must not hold a second queue.
      this.#deps.counters.inc('uplink.dropped_offline')
      return
    }
    this.#queue.push(item)
    this.#pump()
  }

  #startReplay(): void {
    const outbox = this.#deps.outbox
    this.#queue = []
    this.#head = 0
    this.#inflight = 0
    if (!outbox || outbox.size === 0) {
      this.#replay = undefined
      return
    }
    const pending = outbox.pending()
    this.#queue = pending.map((record) => ({ seq: record.seq }))
    this.#replay = { seqs: new Set(pending.map((r) => r.seq)), total: pending.length, started: performance.now(), resolved: 0 }
    this.#deps.logger.info({ records: pending.length }, 'replaying the outbox')
  }

  /** Hands queued publishes to mqtt.js while the link is up and the window has room. */
  #pump(): void {
    const client = this.#client
    const outbox = this.#deps.outbox
    while (client?.connected && this.#inflight < this.#window && this.#head < this.#queue.length) {
      const item = this.#queue[this.#head++] as QueueItem
      let topic: string
      let payload: Buffer
      let retain: boolean
      let seq: number | undefined
      if ('seq' in item) {
        const record = outbox?.get(item.seq)
        if (!record) {
          // Superseded by a newer put (queued behind), or dropped by a bound.
          this.#replayResolved(item.seq)
          continue
        }
        ;({ topic, payload, retain } = record)
        seq = item.seq
      } else {
        ;({ topic, payload, retain } = item)
      }
      const generation = this.#generation
      this.#inflight += 1
      client.publish(topic, payload, { qos: 1, retain }, (err) => {
        if (generation !== this.#generation) return // that connection is gone; the outbox still holds the record
        this.#inflight -= 1
        if (err) {
          this.#deps.counters.inc('uplink.publish_failed')
        } else if (seq !== undefined) {
          outbox?.ack(seq)
          this.#replayResolved(seq)
        }
        this.#pump()
      })
      this.#deps.counters.inc('uplink.sent')
    }
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
  }

  #replayResolved(seq: number): void {
    const replay = this.#replay
    if (!replay || !replay.seqs.delete(seq)) return
    replay.resolved += 1
    if (replay.resolved % 1000 === 0) this.#deps.logger.debug({ replayed: replay.resolved, of: replay.total }, 'outbox replay progress')
    if (replay.seqs.size > 0) return
    this.#replay = undefined
    const report = { records: replay.total, ms: Math.round(performance.now() - replay.started) }
    this.#deps.logger.info(report, `outbox drained: ${report.records} records in ${report.ms} ms`)
    for (const listener of this.#drainListeners) listener(report)
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
    const envelope = createEnvelope('status', { state: 'offline', version: this.#options.version, startedAt: this.#options.startedAt, reason: 'connection lost', ...this.#slot() }, {
      gatewayId: this.#options.gatewayId,
      seq: this.#deps.nextSeq(),
    })
    return { topic: topics.status(this.#options.gatewayId), payload: encodeEnvelope(envelope), qos: 1, retain: true }
  }
}

/**
 * mqtt.js's outgoing store, keeping only what is in flight on the current connection and nothing to resend
 * after a reconnect: the outbox replays what was not acknowledged, in seq order.
 */
class NoResendStore implements IStore {
  readonly #inflight = new Map<number, Packet>()

  put(packet: Packet, cb: (err?: Error) => void): this {
    if (packet.messageId !== undefined) this.#inflight.set(packet.messageId, packet)
    cb()
    return this
  }

  createStream(): ReturnType<IStore['createStream']> {
    this.#inflight.clear()
    return Readable.from([]) as unknown as ReturnType<IStore['createStream']>
  }

  del(packet: Pick<Packet, 'messageId'>, cb: (err?: Error, packet?: Packet) => void): this {
    const stored = packet.messageId === undefined ? undefined : this.#inflight.get(packet.messageId)
    if (packet.messageId !== undefined) this.#inflight.delete(packet.messageId)
    cb(undefined, stored)
    return this
  }

  get(packet: Pick<Packet, 'messageId'>, cb: (err?: Error, packet?: Packet) => void): this {
    const stored = packet.messageId === undefined ? undefined : this.#inflight.get(packet.messageId)
    if (stored) cb(undefined, stored)
    else cb(new Error('missing packet'))
    return this
  }

  close(cb: (err?: Error) => void): void {
    this.#inflight.clear()
    cb()
  }
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    promise.catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
    }),
  ])
  clearTimeout(timer)
}

function redactProxy(proxyUrl: string): string {
  try {
    const url = new URL(proxyUrl)
    if (url.password) url.password = '***'
    return url.toString()
  } catch {
    return 'invalid'
  }
}

const TLS_CLIENT_CERT_REFUSED = /ALERT_(UNKNOWN_CA|CERTIFICATE_REQUIRED|BAD_CERTIFICATE|CERTIFICATE_REVOKED|CERTIFICATE_EXPIRED|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE|ACCESS_DENIED)/i
const SERVER_CERT_UNTRUSTED = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_SIGNATURE_FAILURE'])

function isTlsRefusal(err: Error & { code?: number | string }): boolean {
  const code = String(err.code ?? '')
  return TLS_CLIENT_CERT_REFUSED.test(code) || TLS_CLIENT_CERT_REFUSED.test(err.message) || SERVER_CERT_UNTRUSTED.has(code) || code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID'
}

function explainMqttError(err: Error & { code?: number | string }): string {
  const code = String(err.code ?? '')
  if (err.code === 4 || err.code === 5 || /not authori[sz]ed|bad user ?name or password/i.test(err.message)) {
    return 'relay broker refused the gateway credentials: check gatewayId and password in the relay section of the config'
  }
  if (TLS_CLIENT_CERT_REFUSED.test(code) || TLS_CLIENT_CERT_REFUSED.test(err.message)) {
    return `relay broker refused this box's client certificate (${code || err.message}): it is unknown, expired or revoked; enroll the box again with a new code from the cloud console`
  }
  if (code === 'CERT_NOT_YET_VALID' || code === 'CERT_HAS_EXPIRED') {
    return `relay's server certificate is ${code === 'CERT_NOT_YET_VALID' ? 'not yet valid' : 'expired'} by this box's clock (${new Date().toISOString()}): check the box's date and time (NTP); it reconnects by itself once the clock is right`
  }
  if (SERVER_CERT_UNTRUSTED.has(code)) {
    return `relay's server certificate is not trusted (${code}): check relay.caFile (the CA chain from enrollment) and that the relay URL's host name matches the certificate`
  }
  if (code === 'PROXY_REFUSED' || code === 'PROXY_CONNECT_FAILED' || code === 'PROXY_TIMEOUT') return err.message
  if (code === 'ECONNREFUSED') return 'relay broker refused the connection: is the relay running and the URL right?'
  if (code === 'ENOTFOUND') return 'relay broker host name does not resolve: check the relay URL and DNS'
  return `relay link error: ${err.message}`
}
