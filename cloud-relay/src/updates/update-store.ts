import { randomBytes } from 'node:crypto'
import type { UpdateState } from '#protocol/schemas.js'
import type { Sealer } from '../secrets/sealer.js'
import type { SqlClient } from '../store/sql-client.js'

/** A released version: a signed bundle file the relay serves to enrolled gateways. */
export interface Release {
  version: string
  size: number
  sha256: string
  filePath: string
  notes: string
  createdBy: string
  createdAt: Date
}

/** Which gateways a rollout is for. */
export type RolloutTarget =
  | { kind: 'gateway'; gatewayId: string }
  | { kind: 'tenant'; tenantId: string }
  | { kind: 'percentage'; percent: number }
  | { kind: 'all' }

/** running: boxes of the current stage are being updated; paused: by an admin; halted: by itself (too many failures); done. */
export type RolloutState = 'running' | 'paused' | 'halted' | 'done'

/** A box in a rollout: waiting (in a later stage, not told anything yet) or where its update stands. */
export type BoxUpdateState = 'waiting' | UpdateState

export interface Rollout {
  id: string
  version: string
  target: RolloutTarget
  /** Cumulative shares of the target in percent, e.g. [10, 50, 100]: stage 0 is the first 10 %. */
  stages: number[]
  /** A stage halts the rollout when more than this share (0..1) of its boxes roll back or fail. */
  failureThreshold: number
  installAt: string
  state: RolloutState
  currentStage: number
  reason: string
  createdBy: string
  createdAt: Date
  updatedAt: Date
}

export interface RolloutGateway {
  rolloutId: string
  gatewayId: string
  stage: number
  state: BoxUpdateState
  bytes: number | null
  total: number | null
  reason: string
  sentAt: Date | null
  updatedAt: Date
}

const date = (v: unknown): Date => (v instanceof Date ? v : new Date(String(v)))
const json = <T>(v: unknown): T => (typeof v === 'string' ? JSON.parse(v) as T : v as T)
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v))

type ReleaseRaw = { version: string; size: string | number; sha256: string; file_path: string; notes: string; created_by: string; created_at: Date | string }
type RolloutRaw = {
  id: string; version: string; target: unknown; stages: unknown; failure_threshold: number | string; install_at: string; state: RolloutState
  current_stage: number; reason: string; created_by: string; created_at: Date | string; updated_at: Date | string
}
type BoxRaw = { rollout_id: string; gateway_id: string; stage: number; state: BoxUpdateState; bytes: unknown; total: unknown; reason: string; sent_at: Date | string | null; updated_at: Date | string }

function toRelease(r: ReleaseRaw): Release {
  return { version: r.version, size: Number(r.size), sha256: r.sha256, filePath: r.file_path, notes: r.notes, createdBy: r.created_by, createdAt: date(r.created_at) }
}

function toRollout(r: RolloutRaw): Rollout {
  return {
    id: r.id, version: r.version, target: json<RolloutTarget>(r.target), stages: json<number[]>(r.stages), failureThreshold: Number(r.failure_threshold),
    installAt: r.install_at, state: r.state, currentStage: r.current_stage, reason: r.reason, createdBy: r.created_by, createdAt: date(r.created_at), updatedAt: date(r.updated_at),
  }
}

function toBox(r: BoxRaw): RolloutGateway {
  return {
    rolloutId: r.rollout_id, gatewayId: r.gateway_id, stage: r.stage, state: r.state, bytes: numOrNull(r.bytes), total: numOrNull(r.total),
    reason: r.reason, sentAt: r.sent_at === null ? null : date(r.sent_at), updatedAt: date(r.updated_at),
  }
}

/** update_releases, update_rollouts, update_rollout_gateways, update_secrets (migration 10). */
export class UpdateStore {
  readonly #db: SqlClient

  constructor(db: SqlClient) {
    this.#db = db
  }

  /** Adds a release; false if the version exists already (a version names one bundle forever). */
  async addRelease(release: Release): Promise<boolean> {
    const rows = await this.#db.query(
      `INSERT INTO update_releases (version, size, sha256, file_path, notes, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (version) DO NOTHING RETURNING version`,
      [release.version, release.size, release.sha256, release.filePath, release.notes, release.createdBy, release.createdAt],
    )
    return rows.length === 1
  }

  async getRelease(version: string): Promise<Release | undefined> {
    const rows = await this.#db.query<ReleaseRaw>('SELECT * FROM update_releases WHERE version = $1', [version])
    return rows[0] ? toRelease(rows[0]) : undefined
  }

  async listReleases(): Promise<Release[]> {
    return (await this.#db.query<ReleaseRaw>('SELECT * FROM update_releases ORDER BY created_at DESC, version DESC')).map(toRelease)
  }

  /** The rollout and every box in it, in one statement (so a rollout never exists without its boxes). */
  async createRollout(rollout: Rollout, boxes: ReadonlyArray<{ gatewayId: string; stage: number }>): Promise<void> {
    await this.#db.query(
      `WITH r AS (
         INSERT INTO update_rollouts (id, version, target, stages, failure_threshold, install_at, state, current_stage, reason, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id)
       INSERT INTO update_rollout_gateways (rollout_id, gateway_id, stage, state, updated_at)
       SELECT r.id, u.g, u.s, 'waiting', $11 FROM r, unnest($12::text[], $13::int[]) AS u(g, s)`,
      [rollout.id, rollout.version, JSON.stringify(rollout.target), JSON.stringify(rollout.stages), rollout.failureThreshold, rollout.installAt,
        rollout.state, rollout.currentStage, rollout.reason, rollout.createdBy, rollout.createdAt, boxes.map((b) => b.gatewayId), boxes.map((b) => b.stage)],
    )
  }

  async saveRollout(rollout: Pick<Rollout, 'id' | 'state' | 'currentStage' | 'reason' | 'updatedAt'>): Promise<void> {
    await this.#db.query('UPDATE update_rollouts SET state = $2, current_stage = $3, reason = $4, updated_at = $5 WHERE id = $1',
      [rollout.id, rollout.state, rollout.currentStage, rollout.reason, rollout.updatedAt])
  }

  async saveBox(box: RolloutGateway): Promise<void> {
    await this.#db.query(
      'UPDATE update_rollout_gateways SET state = $3, bytes = $4, total = $5, reason = $6, sent_at = $7, updated_at = $8 WHERE rollout_id = $1 AND gateway_id = $2',
      [box.rolloutId, box.gatewayId, box.state, box.bytes, box.total, box.reason, box.sentAt, box.updatedAt],
    )
  }

  async listRollouts(): Promise<Rollout[]> {
    return (await this.#db.query<RolloutRaw>('SELECT * FROM update_rollouts ORDER BY created_at DESC, id DESC')).map(toRollout)
  }

  async rolloutBoxes(rolloutId: string): Promise<RolloutGateway[]> {
    return (await this.#db.query<BoxRaw>('SELECT * FROM update_rollout_gateways WHERE rollout_id = $1 ORDER BY stage, gateway_id', [rolloutId])).map(toBox)
  }

  async setGatewaySlot(gatewayId: string, slot: string): Promise<void> {
    await this.#db.query('UPDATE gateways SET slot = $2 WHERE id = $1', [gatewayId, slot])
  }

  async gatewaySlots(): Promise<Map<string, string>> {
    const rows = await this.#db.query<{ id: string; slot: string }>('SELECT id, slot FROM gateways WHERE slot IS NOT NULL')
    return new Map(rows.map((r) => [r.id, r.slot]))
  }

  /**
   * The key download tokens are signed with: made once, sealed, shared by every relay instance on this database
   * (a box resumes its download at whichever instance answers, after any restart).
   */
  async tokenKey(sealer: Sealer): Promise<Buffer> {
    await this.#db.query('INSERT INTO update_secrets (id, sealed_token_key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING', [sealer.seal(randomBytes(32), 'update-token-key')])
    const rows = await this.#db.query<{ sealed_token_key: string }>('SELECT sealed_token_key FROM update_secrets WHERE id = 1')
    return sealer.open(rows[0]!.sealed_token_key, 'update-token-key')
  }
}
