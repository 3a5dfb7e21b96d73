/**
 * Outbound webhook calls of the simulated Graph: the validation handshake and the delivery of change and
 * lifecycle notifications, with Graph's rules from research §3: a 2xx within 3 s is delivered; anything else
 * is retried with exponential backoff until 4 hours after the first attempt; several notifications for the
 * same URL may share one POST, within `maxBatchItems` and `maxBatchBytes` (more are split over several POSTs).
 *
 * Network time (the 3 s and 10 s timeouts) is real time, because the receiver's HTTP stack runs on real time
 * even when the simulator's clock is compressed; retry delays and the 4-hour window are simulator time.
 */
import { Agent, request } from 'node:https'
import { createSecureContext, rootCertificates } from 'node:tls'
import { performance } from 'node:perf_hooks'
import type { NotificationEvent, SubscriptionTuning } from './simulator-types.js'

export interface WebhookResponse {
  /** undefined when no answer arrived (timeout, refused, TLS failure). */
  status: number | undefined
  contentType: string | undefined
  body: string
  error: string | undefined
}

/** Timers on the simulator clock (falls back to real timers). */
export interface SimTimers {
  set(fn: () => void, ms: number): unknown
  clear(handle: unknown): void
}

/** POSTs over HTTPS, trusting the given CAs (plus the public roots), with a hard timeout. */
export class WebhookClient {
  #agent: { key: string; agent: Agent } | undefined

  /** `trusted` is read per call: the simulator's CA only exists once it has started. */
  constructor(private readonly trusted: () => readonly string[]) {}

  /**
   * One keep-alive agent and one secure context per set of trusted CAs. Building a secure context parses every
   * public root; doing that and a TLS handshake for each POST made delivery the simulator's biggest CPU cost in
   * time-compressed runs.
   */
  #keepAliveAgent(): Agent {
    const trusted = this.trusted()
    const key = trusted.join('\n')
    if (this.#agent?.key !== key) {
      this.#agent?.agent.destroy()
      const secureContext = createSecureContext({ ca: [...rootCertificates, ...trusted] })
      this.#agent = { key, agent: new Agent({ keepAlive: true, maxSockets: 16, secureContext }) }
    }
    return this.#agent.agent
  }

  /** Closes kept-alive connections (simulator stop). */
  close(): void {
    this.#agent?.agent.destroy()
    this.#agent = undefined
  }

  post(url: string, body: string, contentType: string, timeoutMs: number): Promise<WebhookResponse> {
    return new Promise((resolve) => {
      let settled = false
      const finish = (response: WebhookResponse): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(response)
      }
      let req: ReturnType<typeof request>
      try {
        req = request(url, {
          method: 'POST',
          agent: this.#keepAliveAgent(),
          headers: { 'content-type': contentType, 'content-length': Buffer.byteLength(body) },
        })
      } catch (err) {
        finish({ status: undefined, contentType: undefined, body: '', error: (err as Error).message })
        return
      }
      const timer = setTimeout(() => {
        finish({ status: undefined, contentType: undefined, body: '', error: `no answer within ${timeoutMs} ms` })
        req.destroy()
      }, timeoutMs)
      req.on('response', (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () =>
          finish({
            status: res.statusCode,
            contentType: res.headers['content-type'],
            body: Buffer.concat(chunks).toString('utf8'),
            error: undefined,
          }),
        )
        res.on('error', (err) => finish({ status: undefined, contentType: undefined, body: '', error: err.message }))
      })
      req.on('error', (err) => finish({ status: undefined, contentType: undefined, body: '', error: err.message }))
      req.end(body)
    })
  }
}

/** One entry of a POST's `value` array. */
export interface OutboundItem {
  kind: 'change' | 'lifecycle'
  subscriptionId: string
  /** The user id (change) or lifecycle event name (lifecycle), for events and tests. */
  label: string
  /** App that owns the subscription: rich notifications carry one validation token per app. */
  appId: string
  rich: boolean
  payload: Record<string, unknown>
  /** Simulator time of the first attempt (set on first send). */
  firstAttemptAt?: number
}

interface Batch {
  url: string
  items: OutboundItem[]
  attempt: number
}

export interface DeliveryDeps {
  now(): number
  timers: SimTimers
  client: WebhookClient
  tuning: SubscriptionTuning
  emit(event: NotificationEvent): void
  /** Extra top-level fields for a POST (validationTokens for rich items). */
  decorate(items: readonly OutboundItem[]): Promise<Record<string, unknown>>
}

export class NotificationDelivery {
  /** Items waiting for the batch window, per URL. */
  private readonly gathering = new Map<string, OutboundItem[]>()
  private readonly timers = new Set<unknown>()
  private inFlight = 0
  private waiting = 0
  private stopped = false
  readonly counters = { delivered: 0, failedAttempts: 0, dropped: 0, lifecycleDelivered: 0 }

  constructor(private readonly deps: DeliveryDeps) {}

  /** Queues an item; items for the same URL within the batch window share one POST. */
  enqueue(url: string, item: OutboundItem): void {
    if (this.stopped) return
    const list = this.gathering.get(url)
    if (list !== undefined) {
      list.push(item)
      return
    }
    this.gathering.set(url, [item])
    this.waiting++
    // Real time: batching is about requests in flight, not about simulated minutes.
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      this.waiting--
      const items = this.gathering.get(url) ?? []
      this.gathering.delete(url)
      for (const chunk of this.split(items)) void this.attempt({ url, items: chunk, attempt: 1 })
    }, this.deps.tuning.batchWindowMs)
    this.timers.add(timer)
  }

  /** Notifications queued, in flight or waiting for a retry. */
  pending(): number {
    let gathered = 0
    for (const list of this.gathering.values()) gathered += list.length
    return gathered + this.inFlight + this.waiting
  }

  stop(): void {
    this.stopped = true
    for (const timer of this.timers) {
      clearTimeout(timer as NodeJS.Timeout)
      this.deps.timers.clear(timer)
    }
    this.timers.clear()
    this.gathering.clear()
  }

  /** Records a notification lost on purpose (fault knobs) or for lack of a target. */
  drop(url: string, items: readonly OutboundItem[], reason: string): void {
    this.counters.dropped += items.length
    this.emitFor('dropped', url, items, 0, undefined, reason)
  }

  /** The gathered items in POST-sized groups: at most maxBatchItems, and maxBatchBytes with room for the tokens. */
  private split(items: readonly OutboundItem[]): OutboundItem[][] {
    const { maxBatchItems, maxBatchBytes } = this.deps.tuning
    // `{"value":[` … `]}` and a validation token (about 1.5 KiB) per app: a generous allowance.
    const room = maxBatchBytes - 8 * 1024
    const chunks: OutboundItem[][] = []
    let chunk: OutboundItem[] = []
    let bytes = 0
    for (const item of items) {
      const size = JSON.stringify(item.payload).length + 1
      if (chunk.length > 0 && (chunk.length >= maxBatchItems || bytes + size > room)) {
        chunks.push(chunk)
        chunk = []
        bytes = 0
      }
      chunk.push(item)
      bytes += size
    }
    if (chunk.length > 0) chunks.push(chunk)
    return chunks
  }

  private async attempt(batch: Batch): Promise<void> {
    if (this.stopped) return
    const now = this.deps.now()
    for (const item of batch.items) item.firstAttemptAt ??= now
    this.inFlight += batch.items.length
    let response: WebhookResponse
    let bytes = 0
    try {
      const extra = await this.deps.decorate(batch.items)
      const body = JSON.stringify({ value: batch.items.map((i) => i.payload), ...extra })
      bytes = Buffer.byteLength(body)
      response = await this.deps.client.post(batch.url, body, 'application/json; charset=utf-8', this.deps.tuning.deliveryTimeoutMs)
    } finally {
      this.inFlight -= batch.items.length
    }
    if (this.stopped) return
    const { status } = response
    if (status !== undefined && status >= 200 && status < 300) {
      for (const item of batch.items) {
        if (item.kind === 'change') this.counters.delivered++
        else this.counters.lifecycleDelivered++
      }
      this.emitFor('delivered', batch.url, batch.items, batch.attempt, status, undefined, bytes)
      return
    }
    this.counters.failedAttempts++
    const reason = response.error ?? `HTTP ${String(status)}`
    this.emitFor('failed', batch.url, batch.items, batch.attempt, status, reason, bytes)
    const { retryFirstDelayMs, retryMaxDelayMs, retryWindowMs } = this.deps.tuning
    const delay = Math.min(retryMaxDelayMs, retryFirstDelayMs * 2 ** Math.min(batch.attempt - 1, 20))
    const afterDelay = this.deps.now() + delay
    const keep = batch.items.filter((i) => afterDelay - (i.firstAttemptAt ?? now) <= retryWindowMs)
    const expired = batch.items.filter((i) => !keep.includes(i))
    if (expired.length > 0) this.drop(batch.url, expired, `not delivered within ${retryWindowMs} ms: ${reason}`)
    if (keep.length === 0) return
    this.waiting += keep.length
    const handle = this.deps.timers.set(() => {
      this.timers.delete(handle)
      this.waiting -= keep.length
      void this.attempt({ url: batch.url, items: keep, attempt: batch.attempt + 1 })
    }, delay)
    this.timers.add(handle)
  }

  private emitFor(
    outcome: NotificationEvent['outcome'],
    url: string,
    items: readonly OutboundItem[],
    attempt: number,
    status: number | undefined,
    reason: string | undefined,
    bytes?: number,
  ): void {
    // One event per kind, so a test waiting for lifecycle events never sees them mixed with changes.
    for (const kind of ['change', 'lifecycle'] as const) {
      const mine = items.filter((i) => i.kind === kind)
      if (mine.length === 0) continue
      this.deps.emit({
        kind,
        outcome,
        url,
        subscriptionIds: [...new Set(mine.map((i) => i.subscriptionId))],
        items: mine.map((i) => i.label),
        attempt,
        ...(bytes === undefined ? {} : { bytes }),
        ...(status === undefined ? {} : { status }),
        ...(reason === undefined ? {} : { reason }),
        at: performance.now(),
      })
    }
  }
}
