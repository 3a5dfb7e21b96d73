import type { Logger } from 'pino'
import { MIGRATIONS } from './migrations.js'
import type { SqlClient } from './sql-client.js'

/** Applies pending migrations in order, each in its own transaction. Safe to run on every start. */
export async function migrate(db: SqlClient, logger: Logger): Promise<number> {
  await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
  let applied = 0
  for (const migration of MIGRATIONS) {
    const done = await db.query('SELECT 1 FROM schema_migrations WHERE version = $1', [migration.version])
    if (done.length) continue
    await db.exec(`BEGIN; ${migration.sql}; INSERT INTO schema_migrations (version, name) VALUES (${migration.version}, '${migration.name.replace(/'/g, "''")}'); COMMIT;`)
      .catch((err: unknown) => {
        throw new Error(`migration ${migration.version} (${migration.name}) failed: ${(err as Error).message}`)
      })
    logger.info({ version: migration.version, name: migration.name }, 'migration applied')
    applied++
  }
  return applied
}
