/**
 * The two URLs Graph POSTs to (outside the bearer-protected /api/v1: Graph cannot send our token; the
 * clientState and the encrypted, HMAC-signed content are what authenticate a notification).
 *
 * - `?validationToken=…` (subscription create): 200 text/plain with the URL-decoded token, within 10 s.
 * - otherwise 202 at once and the body goes to a bounded in-memory queue: Graph marks an endpoint slow above
 *   3 s and drops its notifications above 10 s (research §3), so nothing slow happens before the answer.
 *   A full queue answers 503, which Graph retries with backoff.
 */
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Counters } from '../../../gateway/src/core/counters.js'

export const NOTIFICATION_PATH = '/graph/notifications'
export const LIFECYCLE_PATH = '/graph/lifecycle'

export interface WebhookTarget {
  handleNotifications(body: unknown): Promise<void>
  handleLifecycle(body: unknown): Promise<void>
}

interface Job {
  kind: 'notification' | 'lifecycle'
  body: unknown
}

/** The bounded queue between the webhook's 202 and the inbox. */
export class WebhookQueue {
  readonly #jobs: Job[] = []
  readonly #capacity: number
  readonly #target: WebhookTarget
  readonly #log: Logger
  readonly #counters: Counters
  #draining: Promise<void> | undefined

  constructor(target: WebhookTarget, deps: { logger: Logger; counters: Counters }, capacity = 1000) {
    this.#target = target
    this.#capacity = capacity
    this.#log = deps.logger.child({ component: 'webhook' })
    this.#counters = deps.counters
  }

  /** False when the queue is full (the caller answers 503). */
  offer(job: Job): boolean {
    if (this.#jobs.length >= this.#capacity) {
      this.#counters.inc('notify.queue.full')
      return false
    }
    this.#jobs.push(job)
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

export function registerWebhookRoutes(app: FastifyInstance, queue: WebhookQueue): void {
  // Graph sends the validation request as text/plain (possibly empty); fastify parses JSON and text already.
  for (const [path, kind] of [[NOTIFICATION_PATH, 'notification'], [LIFECYCLE_PATH, 'lifecycle']] as const) {
    // Graph puts many items (each with its encrypted content) in one POST: allow more than fastify's 1 MiB.
    app.post(path, { schema: { hide: true }, bodyLimit: 16 * 1024 * 1024 }, async (request, reply) => {
      const query = request.query as Record<string, unknown> | undefined
      const token = query?.['validationToken']
      if (typeof token === 'string') {
        // fastify's query parser already URL-decoded it; Graph wants it back decoded (research §3).
        return reply.code(200).header('content-type', 'text/plain; charset=utf-8').send(token)
      }
      if (!queue.offer({ kind, body: request.body })) {
        return reply.code(503).header('retry-after', '5').send()
      }
      return reply.code(202).send()
    })
  }
}
