import type { SqlClient } from '../store/sql-client.js'

export type ConsoleRole = 'operator' | 'tenant-admin'

export interface ConsoleAccount {
  id: number
  username: string
  role: ConsoleRole
  /** The tenant a tenant admin manages; null for operators. */
  tenantId: string | null
  createdAt: Date
}

export interface ConsoleSessionRow {
  account: ConsoleAccount
  csrfToken: string
  expiresAt: Date
}

type AccountRow = { id: number; username: string; password_hash: string; role: ConsoleRole; tenant_id: string | null; created_at: Date | string }

const toAccount = (r: AccountRow): ConsoleAccount => ({ id: r.id, username: r.username, role: r.role, tenantId: r.tenant_id, createdAt: new Date(r.created_at) })

/** Console accounts and sessions in the relay's database (migration 8). */
export class ConsoleStore {
  constructor(private readonly db: SqlClient) {}

  async countAccounts(): Promise<number> {
    const rows = await this.db.query<{ n: number | string }>('SELECT count(*)::int AS n FROM console_accounts')
    return Number(rows[0]?.n ?? 0)
  }

  /** Inserts an account; the first-run insert passes onlyIfEmpty so two racing first visits cannot both win. */
  async createAccount(a: { username: string; passwordHash: string; role: ConsoleRole; tenantId: string | null }, onlyIfEmpty = false): Promise<ConsoleAccount | undefined> {
    const rows = await this.db.query<AccountRow>(
      onlyIfEmpty
        ? 'INSERT INTO console_accounts (username, password_hash, role, tenant_id) SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM console_accounts) ON CONFLICT (username) DO NOTHING RETURNING *'
        : 'INSERT INTO console_accounts (username, password_hash, role, tenant_id) VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING RETURNING *',
      [a.username, a.passwordHash, a.role, a.tenantId],
    )
    return rows[0] ? toAccount(rows[0]) : undefined
  }

  async findByUsername(username: string): Promise<(ConsoleAccount & { passwordHash: string }) | undefined> {
    const rows = await this.db.query<AccountRow>('SELECT * FROM console_accounts WHERE username = $1', [username])
    const row = rows[0]
    return row ? { ...toAccount(row), passwordHash: row.password_hash } : undefined
  }

  async listAccounts(): Promise<ConsoleAccount[]> {
    return (await this.db.query<AccountRow>('SELECT * FROM console_accounts ORDER BY id')).map(toAccount)
  }

  async deleteAccount(id: number): Promise<boolean> {
    return (await this.db.query('DELETE FROM console_accounts WHERE id = $1 RETURNING id', [id])).length > 0
  }

  async createSession(s: { tokenHash: string; accountId: number; csrfToken: string; createdAt: Date; expiresAt: Date }): Promise<void> {
    await this.db.query('INSERT INTO console_sessions (token_hash, account_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)', [s.tokenHash, s.accountId, s.csrfToken, s.createdAt, s.expiresAt])
  }

  async findSession(tokenHash: string, now: Date): Promise<ConsoleSessionRow | undefined> {
    const rows = await this.db.query<AccountRow & { csrf_token: string; expires_at: Date | string }>(
      'SELECT a.*, s.csrf_token, s.expires_at FROM console_sessions s JOIN console_accounts a ON a.id = s.account_id WHERE s.token_hash = $1 AND s.expires_at > $2',
      [tokenHash, now],
    )
    const row = rows[0]
    return row ? { account: toAccount(row), csrfToken: row.csrf_token, expiresAt: new Date(row.expires_at) } : undefined
  }

  async deleteSession(tokenHash: string): Promise<void> {
    await this.db.query('DELETE FROM console_sessions WHERE token_hash = $1', [tokenHash])
  }

  async deleteExpiredSessions(now: Date): Promise<void> {
    await this.db.query('DELETE FROM console_sessions WHERE expires_at <= $1', [now])
  }
}
