import { mkdir } from 'node:fs/promises'
import type { Logger } from 'pino'

/** The little the store needs from a database: parameterised queries, a script runner, close. */
export interface SqlClient {
  readonly kind: 'pglite' | 'postgres'
  query<Row extends Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<Row[]>
  /** Runs several statements (migrations). */
  exec(sql: string): Promise<void>
  close(): Promise<void>
}

/**
 * PostgreSQL when a URL is given (production), otherwise PGlite (Postgres compiled to WASM, in process) in
 * `dataDir`, or in memory when dataDir is 'memory'. One SQL dialect and one migration set serve both.
 */
export async function openSqlClient(options: { databaseUrl?: string | undefined; dataDir: string }, logger: Logger): Promise<SqlClient> {
  if (options.databaseUrl) {
    const { default: pg } = await import('pg')
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 8 })
    pool.on('error', (err) => logger.error({ err: err.message }, 'PostgreSQL pool error'))
    try {
      await pool.query('select 1')
    } catch (err) {
      await pool.end().catch(() => undefined)
      throw new Error(`cannot reach PostgreSQL at ${redactUrl(options.databaseUrl)}: ${(err as Error).message}. Check DATABASE_URL and that the server accepts connections.`)
    }
    logger.info({ database: redactUrl(options.databaseUrl) }, 'store on PostgreSQL')
    return {
      kind: 'postgres',
      async query<Row extends Record<string, unknown>>(sql: string, params: readonly unknown[] = []) {
        const result = await pool.query(sql, params as unknown[])
        return result.rows as Row[]
      },
      async exec(sql: string) {
        // One connection for the whole script, so a failed script is rolled back on the connection that ran it.
        const client = await pool.connect()
        try {
          await client.query(sql)
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined)
          throw err
        } finally {
          client.release()
        }
      },
      close: () => pool.end(),
    }
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const memory = options.dataDir === 'memory'
  // Sealed token caches, the sealed CA key and password hashes live here: the relay's user only.
  if (!memory) await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  const db = memory ? new PGlite() : new PGlite(options.dataDir)
  await db.waitReady
  logger.info({ dataDir: options.dataDir }, 'store on embedded PGlite')
  return {
    kind: 'pglite',
    async query<Row extends Record<string, unknown>>(sql: string, params: readonly unknown[] = []) {
      const result = await db.query<Row>(sql, params as unknown[])
      return result.rows
    },
    async exec(sql: string) {
      await db.exec(sql)
    },
    close: () => db.close(),
  }
}

export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]+)@/, '//$1:***@')
}
