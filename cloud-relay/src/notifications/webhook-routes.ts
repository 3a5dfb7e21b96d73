/**
 * The two URLs Graph POSTs to (outside the bearer-protected /api/v1: Graph cannot send our token; the
 * clientState and the encrypted, HMAC-signed content are what authenticate a notification). Anyone on the
 * internet can POST here, so everything is bounded before any per-item work:
 *
 * - `?validationToken=…` (subscription create): 200 text/plain (nosniff) with the URL-decoded token, within 10 s,
 *   only for Graph's documented request (no body, one token of plausible length and characters) and only while
 *   the relay is creating a subscription. Anything else carrying a validationToken: 400.
 * - a batch: at most 1 MiB and MAX_NOTIFICATIONS_PER_POST items (413 beyond), JSON `{"value":[{…}]}` (400 else);
 *   items naming no subscription we hold with its clientState are counted and logged in ONE line; a batch with
 *   none of ours answers 403. Otherwise 202 at once and the items go to a bounded in-memory queue: Graph marks an
 *   endpoint slow above 3 s and drops its notifications above 10 s (research §3), so nothing slow happens before
 *   the answer. A full queue answers 503, which Graph retries with backoff.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Counters } from '#kernel/counters.js'
import type { BatchKind, Screening } from './notification-inbox.js'

export const NOTIFICATION_PATH = '/graph/notifications'
export const LIFECYCLE_PATH = '/graph/lifecycle'

/**
 * Graph documents no maximum POST size; its batches are at most a few hundred KiB. A rich presence item is about
 * 1.4 KiB (measured on the simulator's, which follows Graph's documented payload), so 1 MiB holds some 700 of
 * them: more than a whole subscription's 650 people changing at once. An unauthenticated 16 MiB body used to
 * freeze the relay for most of a minute.
 */
export const WEBHOOK_BODY_LIMIT = 1024 * 1024
/**
 * Graph documents no maximum number of notifications per POST either. One subscription covers at most 650 people
 * and every presence change is one item, so 1,000 lets all of a full subscription change in one POST while it
 * bounds what one request can make the relay do.
 */
export const MAX_NOTIFICATIONS_PER_POST = 1000
/**
 * JSON values a body may hold (counted, before parsing, as the `[`, `,` and `:` that precede every value but the
 * first): a rich item has about 40. Parsing half a million zeros costs 10 ms of event loop; this budget caps
 * parsing to a few milliseconds whatever the body.
 */
const MAX_JSON_VALUES = MAX_NOTIFICATIONS_PER_POST * 64
/** Graph's tokens read "Validation: Testing client application reachability for subscription Request-Id: <guid>". */
export const MAX_VALIDATION_TOKEN_LENGTH = 1024
const VALIDATION_TOKEN = new RegExp(`^[A-Za-z0-9 :._~+/=-]{1,${MAX_VALIDATION_TOKEN_LENGTH}}$`)

/** What the webhook needs of the inbox before it answers. */
export interface WebhookScreen {
  /** A subscription create is under way (its validation request is expected). */
  readonly validationPending: boolean
  screen(kind: BatchKind, items: readonly Record<string, unknown>[], validationTokens: unknown): Screening
}

export interface WebhookTarget {
  handleNotifications(body: unknown): Promise<void>
  handleLifecycle(body: unknown): Promise<void>
}

interface Job {
  kind: BatchKind
  body: unknown
  /** Items in the body (the queue is bounded by items too: a job may hold up to a thousand). */
  items: number
}

/** The bounded queue between the webhook's 202 and the inbox. */
export class WebhookQueue {
  readonly #jobs: Job[] = []
  readonly #capacity: number
  readonly #itemCapacity: number
  readonly #target: WebhookTarget
  readonly #log: Logger
  readonly #counters: Counters
  #items = 0
  #draining: Promise<void> | undefined

  constructor(target: WebhookTarget, deps: { logger: Logger; counters: Counters }, capacity = 1000, itemCapacity = 20 * MAX_NOTIFICATIONS_PER_POST) {
    this.#target = target
    this.#capacity = capacity
    this.#itemCapacity = itemCapacity
    this.#log = deps.logger.child({ component: 'webhook' })
    this.#counters = deps.counters
  }

  /** False when the queue is full (the caller answers 503). */
  offer(job: Job): boolean {
    if (this.#jobs.length >= this.#capacity || (this.#jobs.length > 0 && this.#items + job.items > this.#itemCapacity)) {
      this.#counters.inc('notify.queue.full')
      return false
    }
    this.#jobs.push(job)
    this.#items += job.items
    this.#draining ??= this.#drain()
    return true
  }

  /** Resolves when everything queued so far has been processed. */
  async idle(): Promise<void> {
    while (this.#draining !== undefined) await this.#draining
  }

  get length(): number {
    return this.#jobs.length
  }

  async #drain(): Promise<void> {
    // Let the 202 go out before any work.
    await new Promise<void>((resolve) => setImmediate(resolve))
    try {
      for (let job = this.#jobs.shift(); job !== undefined; job = this.#jobs.shift()) {
        this.#items -= job.items
        try {
          if (job.kind === 'notification') await this.#target.handleNotifications(job.body)
          else await this.#target.handleLifecycle(job.body)
        } catch (err) {
          this.#log.error({ err, kind: job.kind }, 'processing a Graph notification failed')
        }
      }
    } finally {
      this.#draining = undefined
    }
  }
}

/** A refusal in words, with a stable code; the webhook's error handler answers it. */
class WebhookRefusal extends Error {
  /** `logged`: the inbox already wrote the request's one log line. */
  constructor(readonly statusCode: 400 | 403 | 413, readonly code: string, message: string, readonly logged = false) {
    super(message)
    this.name = 'WebhookRefusal'
  }
}

const BATCH_SHAPE = 'a Graph notification batch is JSON {"value":[{…}, …]} with content-type application/json'

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** How many JSON values the body can hold at most, counting no further than `budget`. */
function jsonValuesAtMost(body: Buffer, budget: number): number {
  let count = 0
  // , : [ — indexOf skips the long base64 runs of genuine items natively (a byte loop took 3× as long).
  for (const separator of [0x2c, 0x3a, 0x5b]) {
    for (let i = body.indexOf(separator); i !== -1; i = body.indexOf(separator, i + 1)) {
      if (++count > budget) return count
    }
  }
  return count
}

function tooMany(what: string): WebhookRefusal {
  return new WebhookRefusal(413, 'WEBHOOK_TOO_MANY', `${what}; Graph sends at most ${MAX_NOTIFICATIONS_PER_POST} notifications in one POST. Nothing was accepted: send the notifications in smaller batches.`)
}

/** The batch's items, or the refusal: not a batch (400), too many items (413). */
function batchItems(body: unknown): { items: Record<string, unknown>[]; validationTokens: unknown } {
  if (!isRecord(body)) throw new WebhookRefusal(400, 'WEBHOOK_NOT_A_BATCH', `The body is not a Graph notification batch: ${BATCH_SHAPE}.`)
  const value = body['value']
  if (!Array.isArray(value)) throw new WebhookRefusal(400, 'WEBHOOK_NOT_A_BATCH', `The body has no "value" array: ${BATCH_SHAPE}.`)
  if (value.length === 0) throw new WebhookRefusal(400, 'WEBHOOK_NOT_A_BATCH', `The "value" array is empty: ${BATCH_SHAPE}, with at least one notification.`)
  if (value.length > MAX_NOTIFICATIONS_PER_POST) throw tooMany(`This POST holds ${value.length} notifications`)
  const items: Record<string, unknown>[] = []
  for (const [index, item] of value.entries()) {
    if (!isRecord(item)) throw new WebhookRefusal(400, 'WEBHOOK_NOT_A_BATCH', `Item ${index} of "value" is not an object: ${BATCH_SHAPE}.`)
    items.push(item)
  }
  return { items, validationTokens: body['validationTokens'] }
}

export interface WebhookDeps {
  queue: WebhookQueue
  inbox: WebhookScreen
  logger: Logger
}

/** Registers both webhook routes in their own encapsulated plugin (their own body parser and error answers). */
export function registerWebhookRoutes(app: FastifyInstance, deps: WebhookDeps): void {
  const log = deps.logger.child({ component: 'webhook' })
  void app.register(async (webhook) => {
    // The value budget is checked on the raw bytes before JSON.parse sees them.
    const parseJson = webhook.getDefaultJsonParser('error', 'ignore')
    webhook.removeContentTypeParser('application/json')
    webhook.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (request, body, done) => {
      const buffer = body as Buffer
      if (jsonValuesAtMost(buffer, MAX_JSON_VALUES) > MAX_JSON_VALUES) {
        done(tooMany(`This POST holds more JSON values (over ${MAX_JSON_VALUES}) than ${MAX_NOTIFICATIONS_PER_POST} notifications have`), undefined)
        return
      }
      parseJson(request, buffer.toString('utf8'), done)
    })

    webhook.setErrorHandler((err: FastifyError | WebhookRefusal, request, reply) => refuse(log, request, reply, err))

    for (const [path, kind] of [[NOTIFICATION_PATH, 'notification'], [LIFECYCLE_PATH, 'lifecycle']] as const) {
      webhook.post(path, { schema: { hide: true }, bodyLimit: WEBHOOK_BODY_LIMIT }, async (request, reply) => {
        const query = request.query as Record<string, unknown> | undefined
        if (query?.['validationToken'] !== undefined) return answerValidation(log, deps.inbox, request, reply, query['validationToken'])
        const { items, validationTokens } = batchItems(request.body)
        const screened = deps.inbox.screen(kind, items, validationTokens)
        if (screened.verdict === 'unauthenticated') {
          throw new WebhookRefusal(403, 'WEBHOOK_UNKNOWN_SUBSCRIPTION', `None of the ${screened.items} notifications names a subscription this relay holds with its clientState: nothing was accepted. Graph sends notifications only for subscriptions the relay created.`, true)
        }
        if (screened.verdict === 'ignored') return reply.code(202).send()
        if (!deps.queue.offer({ kind, body: screened.body, items: screened.items })) {
          return reply.code(503).header('retry-after', '5').send({ error: { code: 'WEBHOOK_BUSY', message: 'The relay is still working through earlier notifications: send this batch again later.' } })
        }
        return reply.code(202).send()
      })
    }
  })
}

/** Graph's validation request: POST ?validationToken=… with no body, answered with the decoded token as text. */
function answerValidation(log: Logger, inbox: WebhookScreen, request: FastifyRequest, reply: FastifyReply, token: unknown): FastifyReply {
  const bad = (why: string): never => {
    throw new WebhookRefusal(400, 'WEBHOOK_BAD_VALIDATION', `Not a Graph validation request: ${why}.`)
  }
  if (typeof token !== 'string') bad('validationToken appears more than once')
  const body = request.body
  if (body !== undefined && body !== null && body !== '') bad('Graph\'s validation request has no body')
  if (!VALIDATION_TOKEN.test(token as string)) {
    bad(`validationToken must be 1 to ${MAX_VALIDATION_TOKEN_LENGTH} letters, digits, spaces or : . _ ~ + / = -, as Graph's are`)
  }
  if (!inbox.validationPending) {
    bad('the relay is not creating a subscription now, and Graph sends a validation request only while a subscription is created')
  }
  log.info({ path: request.url.split('?')[0] }, 'Graph validation request answered')
  return reply.code(200).header('content-type', 'text/plain; charset=utf-8').header('x-content-type-options', 'nosniff').send(token)
}

/** Every refusal: a status, a code, words that say what to do, and one log line. */
function refuse(log: Logger, request: FastifyRequest, reply: FastifyReply, err: FastifyError | WebhookRefusal): FastifyReply {
  const path = request.url.split('?')[0]
  let status: number
  let code: string
  let message: string
  if (err instanceof WebhookRefusal) {
    ;({ statusCode: status, code, message } = err)
  } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    status = 413
    code = 'WEBHOOK_TOO_LARGE'
    message = `A Graph notification POST carries at most 1 MiB (${WEBHOOK_BODY_LIMIT} bytes); this one is larger and was not read. Graph's batches are far smaller: send smaller batches.`
  } else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    status = 400
    code = 'WEBHOOK_NOT_A_BATCH'
    message = `The body's content-type is ${String(request.headers['content-type'])}: ${BATCH_SHAPE}.`
  } else if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    status = 400
    code = 'WEBHOOK_NOT_A_BATCH'
    message = `The body is not JSON: ${BATCH_SHAPE}.`
  } else if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    status = 400
    code = 'WEBHOOK_NOT_A_BATCH'
    message = `${err.message}: ${BATCH_SHAPE}.`
  } else {
    log.error({ err, path }, 'webhook request failed')
    return reply.code(500).send({ error: { code: 'WEBHOOK_INTERNAL', message: `The relay could not take this notification (request ${request.id}); the relay's log has the details.` } })
  }
  if (!(err instanceof WebhookRefusal && err.logged)) log.warn({ path, status, code, bytes: Number(request.headers['content-length'] ?? 0) || undefined, remoteAddress: request.ip }, 'Graph webhook request refused')
  return reply.code(status).send({ error: { code, message } })
}
