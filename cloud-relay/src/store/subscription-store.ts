import type { SqlClient } from './sql-client.js'

export type ServiceAccountState = 'ok' | 'needs-sign-in'

export interface ServiceAccountRow {
  id: string
  tenantId: string
  /** The signed-in user's UPN. */
  username: string
  /** msal's home account id (oid.tid). */
  homeAccountId: string
  state: ServiceAccountState
  /** Why it needs a sign-in, and what the admin should do. */
  reason: string | null
  action: string | null
  /** msal's serialized token cache, sealed. */
  tokenCache: string
  createdAt: Date
  updatedAt: Date
}

export interface PresenceSubscriptionRow {
  id: string
  tenantId: string
  accountId: string
  /** Graph user ids (lower case) the subscription covers. */
  members: string[]
  /** Sealed. */
  clientState: string
  certificateId: string
  expiresAt: Date
  createdAt: Date
  renewedAt: Date
}

export interface NotificationCertificateRow {
  id: string
  certificatePem: string
  /** Sealed PKCS#8 PEM. */
  privateKey: string
  notAfter: Date
}

const date = (value: unknown): Date => (value instanceof Date ? value : new Date(String(value)))

/** SQL for service accounts, presence subscriptions and the notification certificate (migration 5). */
export class SubscriptionStore {
  constructor(readonly db: SqlClient) {}

  async readSealCheck(): Promise<string | undefined> {
    const rows = await this.db.query<{ sealed: string }>('SELECT sealed FROM seal_check WHERE id = 1')
    return rows[0]?.sealed
  }

  async writeSealCheck(sealed: string): Promise<void> {
    await this.db.query('INSERT INTO seal_check (id, sealed) VALUES (1, $1) ON CONFLICT (id) DO NOTHING', [sealed])
  }

  // ---- service accounts ----

  async upsertAccount(a: Omit<ServiceAccountRow, 'createdAt' | 'updatedAt'>, at: Date): Promise<ServiceAccountRow> {
    const rows = await this.db.query<Record<string, unknown>>(
      `INSERT INTO service_accounts (id, tenant_id, username, home_account_id, state, reason, action, token_cache, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)
       ON CONFLICT (tenant_id, home_account_id) DO UPDATE SET username = EXCLUDED.username, state = EXCLUDED.state,
         reason = EXCLUDED.reason, action = EXCLUDED.action, token_cache = EXCLUDED.token_cache, updated_at = EXCLUDED.updated_at
       RETURNING *`,
      [a.id, a.tenantId, a.username, a.homeAccountId, a.state, a.reason, a.action, a.tokenCache, at],
    )
    return toAccount(rows[0]!)
  }

  async listAccounts(tenantId?: string): Promise<ServiceAccountRow[]> {
    const rows = tenantId === undefined
      ? await this.db.query<Record<string, unknown>>('SELECT * FROM service_accounts ORDER BY created_at, id')
      : await this.db.query<Record<string, unknown>>('SELECT * FROM service_accounts WHERE tenant_id = $1 ORDER BY created_at, id', [tenantId])
    return rows.map(toAccount)
  }

  async saveTokenCache(accountId: string, sealedCache: string, at: Date): Promise<void> {
    await this.db.query('UPDATE service_accounts SET token_cache = $2, updated_at = $3 WHERE id = $1', [accountId, sealedCache, at])
  }

  async setAccountState(accountId: string, state: ServiceAccountState, reason: string | null, action: string | null, at: Date): Promise<void> {
    await this.db.query('UPDATE service_accounts SET state = $2, reason = $3, action = $4, updated_at = $5 WHERE id = $1', [accountId, state, reason, action, at])
  }

  async deleteAccount(accountId: string): Promise<boolean> {
    const rows = await this.db.query('DELETE FROM service_accounts WHERE id = $1 RETURNING id', [accountId])
    return rows.length > 0
  }

  // ---- subscriptions ----

  async upsertSubscription(s: Omit<PresenceSubscriptionRow, 'createdAt' | 'renewedAt'>, at: Date): Promise<void> {
    // One subscription per account: a new one replaces whatever the account had.
    await this.db.query(
      `INSERT INTO presence_subscriptions (id, tenant_id, account_id, members, client_state, certificate_id, expires_at, created_at, renewed_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
       ON CONFLICT (account_id) DO UPDATE SET id = EXCLUDED.id, members = EXCLUDED.members, client_state = EXCLUDED.client_state,
         certificate_id = EXCLUDED.certificate_id, expires_at = EXCLUDED.expires_at, created_at = EXCLUDED.created_at, renewed_at = EXCLUDED.renewed_at`,
      [s.id, s.tenantId, s.accountId, s.members, s.clientState, s.certificateId, s.expiresAt, at],
    )
  }

  async renewSubscription(id: string, expiresAt: Date, at: Date): Promise<void> {
    await this.db.query('UPDATE presence_subscriptions SET expires_at = $2, renewed_at = $3 WHERE id = $1', [id, expiresAt, at])
  }

  async deleteSubscription(id: string): Promise<void> {
    await this.db.query('DELETE FROM presence_subscriptions WHERE id = $1', [id])
  }

  async listSubscriptions(tenantId?: string): Promise<PresenceSubscriptionRow[]> {
    const rows = tenantId === undefined
      ? await this.db.query<Record<string, unknown>>('SELECT * FROM presence_subscriptions ORDER BY id')
      : await this.db.query<Record<string, unknown>>('SELECT * FROM presence_subscriptions WHERE tenant_id = $1 ORDER BY id', [tenantId])
    return rows.map(toSubscription)
  }

  // ---- notification certificate ----

  async latestCertificate(): Promise<NotificationCertificateRow | undefined> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT * FROM notification_certificates ORDER BY not_after DESC LIMIT 1')
    const row = rows[0]
    return row === undefined ? undefined : toCertificate(row)
  }

  async listCertificates(): Promise<NotificationCertificateRow[]> {
    const rows = await this.db.query<Record<string, unknown>>('SELECT * FROM notification_certificates ORDER BY not_after DESC')
    return rows.map(toCertificate)
  }

  async insertCertificate(c: NotificationCertificateRow): Promise<void> {
    await this.db.query(
      'INSERT INTO notification_certificates (id, certificate_pem, private_key, not_after) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING',
      [c.id, c.certificatePem, c.privateKey, c.notAfter],
    )
  }
}

function toAccount(r: Record<string, unknown>): ServiceAccountRow {
  return {
    id: String(r['id']),
    tenantId: String(r['tenant_id']),
    username: String(r['username']),
    homeAccountId: String(r['home_account_id']),
    state: r['state'] === 'ok' ? 'ok' : 'needs-sign-in',
    reason: (r['reason'] as string | null) ?? null,
    action: (r['action'] as string | null) ?? null,
    tokenCache: String(r['token_cache']),
    createdAt: date(r['created_at']),
    updatedAt: date(r['updated_at']),
  }
}

function toSubscription(r: Record<string, unknown>): PresenceSubscriptionRow {
  return {
    id: String(r['id']),
    tenantId: String(r['tenant_id']),
    accountId: String(r['account_id']),
    members: (r['members'] as string[] | null) ?? [],
    clientState: String(r['client_state']),
    certificateId: String(r['certificate_id']),
    expiresAt: date(r['expires_at']),
    createdAt: date(r['created_at']),
    renewedAt: date(r['renewed_at']),
  }
}

function toCertificate(r: Record<string, unknown>): NotificationCertificateRow {
  return {
    id: String(r['id']),
    certificatePem: String(r['certificate_pem']),
    privateKey: String(r['private_key']),
    notAfter: date(r['not_after']),
  }
}
