import { randomBytes } from 'node:crypto'
import pg from 'pg'

export const POSTGRES_ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/**
 * A fresh schema on the PostgreSQL service for one test, dropped afterwards. Returns a connection URL whose
 * search_path points at it. When CI is set and PostgreSQL is unreachable this throws: the test fails, never skips.
 */
export async function createPostgresSchema(): Promise<{ url: string; drop: () => Promise<void> }> {
  const schema = `t_${randomBytes(6).toString('hex')}`
  const admin = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
  try {
    await admin.connect()
  } catch (err) {
    throw new Error(`PostgreSQL is required for this test at ${POSTGRES_ADMIN_URL} (set TEST_POSTGRES_URL): ${(err as Error).message}`)
  }
  await admin.query(`CREATE SCHEMA ${schema}`)
  await admin.end()
  const url = `${POSTGRES_ADMIN_URL}${POSTGRES_ADMIN_URL.includes('?') ? '&' : '?'}options=${encodeURIComponent(`-c search_path=${schema}`)}`
  return {
    url,
    drop: async () => {
      const c = new pg.Client({ connectionString: POSTGRES_ADMIN_URL })
      await c.connect()
      await c.query(`DROP SCHEMA ${schema} CASCADE`)
      await c.end()
    },
  }
}
