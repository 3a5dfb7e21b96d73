import type { TelemetryData } from '#protocol/schemas.js'
import type { SqlClient } from '../store/sql-client.js'

export interface TelemetryRow {
  gatewayId: string
  at: Date
  data: TelemetryData
}

type Raw = { gateway_id: string; at: Date | string; data: TelemetryData | string }

function toRow(r: Raw): TelemetryRow {
  return {
    gatewayId: r.gateway_id,
    at: r.at instanceof Date ? r.at : new Date(r.at),
    data: typeof r.data === 'string' ? (JSON.parse(r.data) as TelemetryData) : r.data,
  }
}

/** gateway_telemetry (migration 7): every telemetry message a gateway sent, with the relay's receive time. */
export class TelemetryStore {
  readonly #db: SqlClient

  constructor(db: SqlClient) {
    this.#db = db
  }

  async append(gatewayId: string, at: Date, data: TelemetryData): Promise<void> {
    await this.#db.query('INSERT INTO gateway_telemetry (gateway_id, at, data) VALUES ($1, $2, $3)', [gatewayId, at, JSON.stringify(data)])
  }

  /** Oldest first; `from` inclusive, `to` exclusive; the newest `limit` rows of the range. */
  async list(gatewayId: string, range: { from?: Date | undefined; to?: Date | undefined; limit: number }): Promise<TelemetryRow[]> {
    const rows = await this.#db.query<Raw>(
      `SELECT gateway_id, at, data FROM gateway_telemetry
        WHERE gateway_id = $1 AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)
        ORDER BY at DESC, id DESC LIMIT $4`,
      [gatewayId, range.from ?? null, range.to ?? null, range.limit],
    )
    return rows.reverse().map(toRow)
  }

  /** The latest row per gateway (fills the in-memory view after a relay restart). */
  async latest(): Promise<TelemetryRow[]> {
    const rows = await this.#db.query<Raw>('SELECT DISTINCT ON (gateway_id) gateway_id, at, data FROM gateway_telemetry ORDER BY gateway_id, at DESC, id DESC')
    return rows.map(toRow)
  }

  /** Same contract as RelayStore.deleteEventsOlderThan, so EventRetention sweeps this table the same way. */
  async deleteEventsOlderThan(cutoff: Date, batchSize: number): Promise<number> {
    const rows = await this.#db.query<{ removed: number | string }>(
      `WITH doomed AS (SELECT id FROM gateway_telemetry WHERE at < $1 ORDER BY at LIMIT $2),
            removed AS (DELETE FROM gateway_telemetry WHERE id IN (SELECT id FROM doomed) RETURNING 1)
       SELECT count(*)::int AS removed FROM removed`,
      [cutoff, batchSize],
    )
    return Number(rows[0]?.removed ?? 0)
  }
}
