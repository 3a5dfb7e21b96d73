/**
 * Whether a database error means "the database is away" (retry later, keep the rows) rather than "this row is
 * refused" (retrying it can never succeed). PostgreSQL's SQLSTATE classes: 08 connection, 40 rollback
 * (serialization, deadlock), 53 insufficient resources, 57 operator intervention (shutdown, cancel), 58 system.
 * Node's socket errors (ECONNRESET, ECONNREFUSED…) and pg's own connection messages are transient too.
 */
export function isTransientStoreError(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  if (err instanceof RangeError || err instanceof TypeError) return false // the driver refused a value: a row error
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') {
    if (/^E[A-Z]+$/.test(code)) return true
    if (/^[0-9A-Z]{5}$/.test(code)) return /^(08|40|53|57|58)/.test(code)
  }
  return /connection|terminated|timeout|ECONN|socket|closed|not queryable|Client was closed/i.test(err.message)
}
