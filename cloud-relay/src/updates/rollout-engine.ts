import { createHash, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { FINAL_UPDATE_STATES, type ResultData, type UpdateCommandData, type UpdateProgressData } from '#protocol/schemas.js'
import type { Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import type { Release, Rollout, RolloutGateway, RolloutTarget, UpdateStore } from './update-store.js'

export class RolloutError extends Error {
  constructor(readonly code: 'UPDATE_NO_RELEASE' | 'UPDATE_NO_GATEWAYS' | 'UPDATE_BUSY' | 'UPDATE_NO_ROLLOUT' | 'UPDATE_BAD_STATE' | 'UPDATE_BAD_STAGES', message: string) {
    super(message)
    this.name = 'RolloutError'
  }
}

export interface RolloutRequest {
  version: string
  target: RolloutTarget
  /** Cumulative shares of the target in percent, ascending, ending at 100: [10, 50, 100]. */
  stages: number[]
  failureThreshold: number
  installAt: string
  by: string
}

export interface RolloutEngineDeps {
  store: UpdateStore
  clock: Clock
  logger: Logger
  counters: Counters
  release(version: string): Promise<Release | undefined>
  /** Enrolled, not revoked gateways with their tenant. */
  gateways(): ReadonlyArray<{ id: string; tenantId: string }>
  /** The download URL and token for a gateway and version. */
  download(gatewayId: string, version: string): { url: string; token: string }
  /** Sends cmd/update and resolves with the box's result (rejects on timeout or without a broker). */
  sendUpdate(gatewayId: string, data: UpdateCommandData): Promise<ResultData>
  /** Every change of a rollout or of a box in it (console live view). */
  onChange?(rolloutId: string): void
}

interface Live {
  rollout: Rollout
  boxes: Map<string, RolloutGateway>
}

const FINAL = new Set<string>(FINAL_UPDATE_STATES)
const FAILED = new Set<string>(['rolled-back', 'failed'])
/** cmd/update sent at once at most: a stage of thousands is sent in waves. */
const SEND_CONCURRENCY = 50

/**
 * Rolls one release out to a target in stages. Each box of the target is given a stage when the rollout is made
 * (a stable shuffle, so a percentage is a spread of the fleet, not the oldest boxes); only boxes of the current stage
 * are ever sent cmd/update. A stage is done when all its boxes are healthy, rolled back or failed; the rollout halts
 * by itself as soon as more than failureThreshold of a stage's boxes rolled back or failed. Every state is in the
 * store first, so a relay restart continues where it stopped: boxes told nothing yet are told after it.
 */
export class RolloutEngine {
  readonly #deps: RolloutEngineDeps
  readonly #log: Logger
  readonly #live = new Map<string, Live>()
  /** One change at a time per rollout: progress reports and sends of one rollout never interleave their writes. */
  readonly #locks = new Map<string, Promise<unknown>>()
  readonly #sending = new Set<string>()
  /** Boxes that came online while a command to them was unanswered: sent again once that one times out. */
  readonly #cameOnline = new Set<string>()
  #started = false

  constructor(deps: RolloutEngineDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'rollouts' })
  }

  /** Loads unfinished rollouts from the store and continues the running ones. */
  async start(): Promise<void> {
    if (this.#started) return
    this.#started = true
    for (const rollout of await this.#deps.store.listRollouts()) {
      if (rollout.state === 'done') continue
      const boxes = await this.#deps.store.rolloutBoxes(rollout.id)
      this.#live.set(rollout.id, { rollout, boxes: new Map(boxes.map((b) => [b.gatewayId, b])) })
    }
    for (const id of this.#live.keys()) void this.#locked(id, () => this.#advance(id))
  }

  stop(): void {
    this.#started = false
  }

  /** Waits for every change in progress (tests, shutdown). */
  async idle(): Promise<void> {
    while (this.#locks.size > 0) await Promise.all([...this.#locks.values()].map((p) => p.catch(() => undefined)))
  }

  async list(): Promise<Rollout[]> {
    return this.#deps.store.listRollouts()
  }

  async get(id: string): Promise<{ rollout: Rollout; boxes: RolloutGateway[] } | undefined> {
    const live = this.#live.get(id)
    if (live) return { rollout: { ...live.rollout }, boxes: [...live.boxes.values()].map((b) => ({ ...b })).sort((a, b) => a.stage - b.stage || a.gatewayId.localeCompare(b.gatewayId)) }
    const rollout = (await this.#deps.store.listRollouts()).find((r) => r.id === id)
    return rollout ? { rollout, boxes: await this.#deps.store.rolloutBoxes(id) } : undefined
  }

  async create(request: RolloutRequest): Promise<Rollout> {
    const release = await this.#deps.release(request.version)
    if (!release) throw new RolloutError('UPDATE_NO_RELEASE', `No release ${request.version}: register or upload its bundle first (POST /api/v1/updates/releases).`)
    const stages = request.stages
    if (stages.length === 0 || stages.some((s, i) => s <= (stages[i - 1] ?? 0)) || stages[stages.length - 1] !== 100) {
      throw new RolloutError('UPDATE_BAD_STAGES', `Stages ${JSON.stringify(stages)} must be shares of the target in percent, rising, ending at 100: for example [10, 50, 100].`)
    }
    const id = `r-${randomUUID().slice(0, 8)}`
    const targets = this.#resolve(id, request.target)
    if (targets.length === 0) throw new RolloutError('UPDATE_NO_GATEWAYS', `The target ${describeTarget(request.target)} has no enrolled gateway: enroll one, or pick another target.`)
    const busy = targets.filter((g) => this.#activeRolloutOf(g) !== undefined)
    if (busy.length > 0) {
      throw new RolloutError('UPDATE_BUSY', `${busy.length} of the target's gateways (${busy.slice(0, 5).join(', ')}${busy.length > 5 ? ', …' : ''}) are still in rollout ${this.#activeRolloutOf(busy[0]!)}: wait for it to finish, or pick another target.`)
    }
    const now = new Date(this.#deps.clock.now())
    // Stage i takes the boxes from ceil(previous% × n) to ceil(this% × n): every stage but an empty one has a box.
    const boxes = targets.map((gatewayId, index) => ({ gatewayId, stage: stages.findIndex((share) => index < Math.ceil((share / 100) * targets.length)) }))
    const rollout: Rollout = {
      id, version: release.version, target: request.target, stages, failureThreshold: request.failureThreshold, installAt: request.installAt,
      state: 'running', currentStage: 0, reason: '', createdBy: request.by, createdAt: now, updatedAt: now,
    }
    await this.#deps.store.createRollout(rollout, boxes)
    this.#live.set(id, {
      rollout,
      boxes: new Map(boxes.map((b) => [b.gatewayId, { rolloutId: id, gatewayId: b.gatewayId, stage: b.stage, state: 'waiting' as const, bytes: null, total: null, reason: '', sentAt: null, updatedAt: now }])),
    })
    this.#deps.counters.inc('updates.rollouts_started')
    this.#log.info({ rollout: id, version: release.version, target: request.target, gateways: targets.length, stages }, 'rollout started')
    void this.#locked(id, () => this.#advance(id))
    return { ...rollout }
  }

  async pause(id: string, by: string): Promise<Rollout> {
    return this.#locked(id, async () => {
      const live = this.#require(id)
      if (live.rollout.state !== 'running') throw new RolloutError('UPDATE_BAD_STATE', `Rollout ${id} is ${live.rollout.state}, not running: only a running rollout can be paused.`)
      await this.#setState(live, 'paused', `paused by ${by}: boxes already updating finish, no other box is told to update`)
      return { ...live.rollout }
    })
  }

  async resume(id: string, by: string): Promise<Rollout> {
    const rollout = await this.#locked(id, async () => {
      const live = this.#require(id)
      if (live.rollout.state !== 'paused') {
        throw new RolloutError('UPDATE_BAD_STATE', live.rollout.state === 'halted'
          ? `Rollout ${id} halted by itself (${live.rollout.reason}): find out why the boxes failed, then start a new rollout for the boxes left.`
          : `Rollout ${id} is ${live.rollout.state}, not paused: only a paused rollout can be resumed.`)
      }
      await this.#setState(live, 'running', `resumed by ${by}`)
      return { ...live.rollout }
    })
    void this.#locked(id, () => this.#advance(id))
    return rollout
  }

  /** A box's progress report (the update topic). Reports for rollouts or boxes the relay does not know are ignored. */
  async onProgress(gatewayId: string, data: UpdateProgressData): Promise<void> {
    const live = this.#live.get(data.updateId)
    const box = live?.boxes.get(gatewayId)
    if (!live || !box) {
      this.#log.debug({ gatewayId, updateId: data.updateId }, 'update progress for no rollout the relay runs')
      return
    }
    await this.#locked(live.rollout.id, async () => {
      if (box.state === 'waiting') {
        // A box reports an update it was never sent (another relay's or an old rollout's): not this stage's business.
        this.#log.warn({ gatewayId, rollout: live.rollout.id }, 'progress from a box this rollout has not told to update; ignored')
        return
      }
      // A final state stays (a late download report after a failure must not reopen it).
      if (FINAL.has(box.state) && (box.state === data.state || !FINAL.has(data.state))) return
      box.state = data.state
      box.bytes = data.bytes ?? (data.state === 'downloading' ? 0 : box.bytes)
      box.total = data.total ?? box.total
      box.reason = data.reason ?? ''
      box.updatedAt = new Date(this.#deps.clock.now())
      await this.#deps.store.saveBox(box)
      if (FINAL.has(data.state)) this.#deps.counters.inc(`updates.box_${data.state}`)
      if (FAILED.has(data.state)) this.#log.warn({ gatewayId, rollout: live.rollout.id, state: data.state, reason: data.reason }, 'update did not succeed on a box')
      this.#deps.onChange?.(live.rollout.id)
      await this.#advance(live.rollout.id)
    })
  }

  /** A box came online: boxes of a running stage that were not reached yet are told now. */
  onGatewayOnline(gatewayId: string): void {
    for (const live of this.#live.values()) {
      const box = live.boxes.get(gatewayId)
      if (box && box.state === 'queued' && box.stage === live.rollout.currentStage && live.rollout.state === 'running') {
        const key = `${live.rollout.id}/${gatewayId}`
        if (this.#sending.has(key)) this.#cameOnline.add(key)
        else void this.#locked(live.rollout.id, async () => this.#send(live, [box]))
      }
    }
  }

  #activeRolloutOf(gatewayId: string): string | undefined {
    for (const live of this.#live.values()) {
      const box = live.boxes.get(gatewayId)
      if (box && (live.rollout.state === 'running' || live.rollout.state === 'paused') && !FINAL.has(box.state)) return live.rollout.id
    }
    return undefined
  }

  #resolve(id: string, target: RolloutTarget): string[] {
    const all = this.#deps.gateways()
    const chosen = target.kind === 'gateway' ? all.filter((g) => g.id === target.gatewayId)
      : target.kind === 'tenant' ? all.filter((g) => g.tenantId === target.tenantId)
        : all
    // A stable shuffle per rollout: a stage is a spread of the fleet (tenants, ages), not the first boxes by name.
    const order = (gatewayId: string) => createHash('sha256').update(`${id}\n${gatewayId}`).digest('hex')
    const shuffled = chosen.map((g) => g.id).sort((a, b) => order(a).localeCompare(order(b)))
    return target.kind === 'percentage' ? shuffled.slice(0, Math.ceil((target.percent / 100) * shuffled.length)) : shuffled
  }

  #require(id: string): Live {
    const live = this.#live.get(id)
    if (!live) throw new RolloutError('UPDATE_NO_ROLLOUT', `No unfinished rollout ${id}: list them with GET /api/v1/updates/rollouts.`)
    return live
  }

  async #locked<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(id) ?? Promise.resolve()
    const next = previous.catch(() => undefined).then(work)
    this.#locks.set(id, next)
    try {
      return await next
    } finally {
      if (this.#locks.get(id) === next) this.#locks.delete(id)
    }
  }

  async #setState(live: Live, state: Rollout['state'], reason: string): Promise<void> {
    live.rollout.state = state
    live.rollout.reason = reason
    live.rollout.updatedAt = new Date(this.#deps.clock.now())
    await this.#deps.store.saveRollout(live.rollout)
    this.#log.info({ rollout: live.rollout.id, state, reason }, 'rollout state changed')
    this.#deps.onChange?.(live.rollout.id)
  }

  /** Halts, finishes a stage, opens the next one, or tells the current stage's boxes that were not told yet. */
  async #advance(id: string): Promise<void> {
    const live = this.#live.get(id)
    if (!live || !this.#started) return
    const { rollout } = live
    if (rollout.state === 'halted' || rollout.state === 'done') return
    for (;;) {
      const stage = [...live.boxes.values()].filter((b) => b.stage === rollout.currentStage)
      const failed = stage.filter((b) => FAILED.has(b.state)).length
      if (stage.length > 0 && failed / stage.length > rollout.failureThreshold) {
        const share = Math.round((failed / stage.length) * 100)
        await this.#setState(live, 'halted', `stopped by itself: ${failed} of ${stage.length} boxes in stage ${rollout.currentStage + 1} (${share} %) rolled back or failed, more than the ${Math.round(rollout.failureThreshold * 100)} % allowed; boxes of later stages were not touched`)
        this.#deps.counters.inc('updates.rollouts_halted')
        return
      }
      if (rollout.state !== 'running') return
      if (stage.every((b) => FINAL.has(b.state))) {
        if (rollout.currentStage >= rollout.stages.length - 1) {
          await this.#setState(live, 'done', `every stage finished: ${[...live.boxes.values()].filter((b) => b.state === 'healthy').length} of ${live.boxes.size} boxes healthy`)
          this.#live.delete(id)
          return
        }
        rollout.currentStage++
        rollout.updatedAt = new Date(this.#deps.clock.now())
        await this.#deps.store.saveRollout(rollout)
        this.#log.info({ rollout: id, stage: rollout.currentStage + 1 }, 'rollout stage opened')
        continue
      }
      const waiting = stage.filter((b) => b.state === 'waiting')
      for (const box of waiting) {
        box.state = 'queued'
        box.updatedAt = new Date(this.#deps.clock.now())
        await this.#deps.store.saveBox(box)
      }
      // After a restart, boxes queued but never sent are sent now (sentAt null).
      const unsent = stage.filter((b) => b.state === 'queued' && b.sentAt === null)
      if (unsent.length > 0) this.#deps.onChange?.(id)
      await this.#send(live, unsent)
      return
    }
  }

  /** Sends cmd/update to `boxes`, at most SEND_CONCURRENCY at a time; their answers come back through #answered. */
  async #send(live: Live, boxes: RolloutGateway[]): Promise<void> {
    const release = await this.#deps.release(live.rollout.version)
    if (!release) {
      await this.#setState(live, 'halted', `release ${live.rollout.version} was removed from the relay: start a new rollout with a release it has`)
      return
    }
    const pending = boxes.filter((b) => !this.#sending.has(`${live.rollout.id}/${b.gatewayId}`))
    for (let i = 0; i < pending.length; i += SEND_CONCURRENCY) {
      await Promise.all(pending.slice(i, i + SEND_CONCURRENCY).map(async (box) => {
        const key = `${live.rollout.id}/${box.gatewayId}`
        this.#sending.add(key)
        const { url, token } = this.#deps.download(box.gatewayId, release.version)
        box.sentAt = new Date(this.#deps.clock.now())
        await this.#deps.store.saveBox(box)
        this.#deps.counters.inc('updates.commands_sent')
        const command: UpdateCommandData = { updateId: live.rollout.id, version: release.version, size: release.size, sha256: release.sha256, url, token, installAt: live.rollout.installAt }
        // The answer is awaited outside the lock: a stage of boxes that do not answer must not hold up progress reports.
        void this.#deps.sendUpdate(box.gatewayId, command)
          .then((result) => this.#locked(live.rollout.id, () => this.#answered(live, box, result)))
          .catch((err: unknown) => this.#locked(live.rollout.id, () => this.#unanswered(live, box, (err as Error).message)))
          .catch((err: unknown) => this.#log.error({ gatewayId: box.gatewayId, rollout: live.rollout.id, err: (err as Error).message }, 'recording a box\'s answer to cmd/update failed'))
          .finally(() => this.#sending.delete(key))
      }))
    }
  }

  async #answered(live: Live, box: RolloutGateway, result: ResultData): Promise<void> {
    if (result.ok || box.state !== 'queued') return
    box.state = 'failed'
    box.reason = `the box refused the update: ${result.error?.message ?? result.error?.code ?? 'no reason given'}`
    box.updatedAt = new Date(this.#deps.clock.now())
    await this.#deps.store.saveBox(box)
    this.#deps.counters.inc('updates.box_failed')
    this.#deps.onChange?.(live.rollout.id)
    await this.#advance(live.rollout.id)
  }

  async #unanswered(live: Live, box: RolloutGateway, why: string): Promise<void> {
    if (box.state !== 'queued' || !this.#started) return
    // Not a failure of the update: the box is offline or slow. It is told again when it comes back online.
    box.sentAt = null
    box.reason = `not reached yet (${why}); the relay tells it again when it comes online`
    box.updatedAt = new Date(this.#deps.clock.now())
    await this.#deps.store.saveBox(box)
    this.#deps.onChange?.(live.rollout.id)
    const key = `${live.rollout.id}/${box.gatewayId}`
    if (this.#cameOnline.delete(key) && live.rollout.state === 'running') {
      // It came online while this command was lost: tell it now (after #sending lets go of the key).
      setImmediate(() => void this.#locked(live.rollout.id, () => this.#send(live, [box])).catch(() => undefined))
    }
  }
}

export function describeTarget(target: RolloutTarget): string {
  switch (target.kind) {
    case 'gateway': return `gateway ${target.gatewayId}`
    case 'tenant': return `tenant ${target.tenantId}`
    case 'percentage': return `${target.percent} % of all gateways`
    default: return 'all gateways'
  }
}
