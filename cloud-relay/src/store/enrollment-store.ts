import type { SqlClient } from './sql-client.js'

/**
 * Every SQL statement of enrollment (migration 6): the relay CA, one-time codes, the gateways' certificates and
 * their enrollment state. Steps that must happen together (spend a code, record a certificate and revoke the
 * ones it replaces) are single statements with data-modifying CTEs, so PostgreSQL and PGlite run them atomically
 * without a transaction API.
 */

export type EnrollmentState = 'created' | 'enrolled' | 'revoked'

export interface RelayCaRow {
  certificatePem: string
  /** The CA's PKCS#8 key, sealed (purpose relay-ca-key). */
  sealedKey: string
  fingerprint256: string
  createdAt: Date
}

export interface GatewayIdentityRow {
  id: string
  tenantId: string
  name: string
  state: EnrollmentState
  createdAt: Date
  enrolledAt: Date | null
  revokedAt: Date | null
  revokedReason: string | null
  revokedBy: string | null
  currentSerial: string | null
  previousSerial: string | null
  /** notAfter of the current certificate. */
  notAfter: Date | null
}

export interface CodeRow {
  gatewayId: string
  expiresAt: Date
  usedAt: Date | null
  invalidatedAt: Date | null
  gatewayState: EnrollmentState
}

export interface CertificateRow {
  serial: string
  gatewayId: string
  notBefore: Date
  notAfter: Date
  publicKeySha256: string
  issuedAt: Date
  revokedAt: Date | null
}

export interface NewCertificate {
  serial: string
  notBefore: Date
  notAfter: Date
  publicKeySha256: string
}

type Row = Record<string, unknown>

const date = (value: unknown): Date => (value instanceof Date ? value : new Date(String(value)))
const dateOrNull = (value: unknown): Date | null => (value === null || value === undefined ? null : date(value))
const textOrNull = (value: unknown): string | null => (value === null || value === undefined ? null : String(value))

const IDENTITY_COLUMNS = `g.id, g.tenant_id, g.name, g.enrollment_state, g.created_at, g.enrolled_at, g.revoked_at, g.revoked_reason,
  g.revoked_by, g.current_serial, g.previous_serial, c.not_after`

function toIdentity(r: Row): GatewayIdentityRow {
  return {
    id: String(r.id),
    tenantId: String(r.tenant_id),
    name: String(r.name ?? ''),
    state: r.enrollment_state as EnrollmentState,
    createdAt: date(r.created_at),
    enrolledAt: dateOrNull(r.enrolled_at),
    revokedAt: dateOrNull(r.revoked_at),
    revokedReason: textOrNull(r.revoked_reason),
    revokedBy: textOrNull(r.revoked_by),
    currentSerial: textOrNull(r.current_serial),
    previousSerial: textOrNull(r.previous_serial),
    notAfter: dateOrNull(r.not_after),
  }
}

function toCertificate(r: Row): CertificateRow {
  return {
    serial: String(r.serial),
    gatewayId: String(r.gateway_id),
    notBefore: date(r.not_before),
    notAfter: date(r.not_after),
    publicKeySha256: String(r.public_key_sha256),
    issuedAt: date(r.issued_at),
    revokedAt: dateOrNull(r.revoked_at),
  }
}

export class EnrollmentStore {
  constructor(readonly db: SqlClient) {}

  async readRelayCa(): Promise<RelayCaRow | undefined> {
    const [r] = await this.db.query('SELECT certificate_pem, private_key, fingerprint256, created_at FROM relay_ca WHERE id = 1')
    if (!r) return undefined
    return { certificatePem: String(r.certificate_pem), sealedKey: String(r.private_key), fingerprint256: String(r.fingerprint256), createdAt: date(r.created_at) }
  }

  /** false when another relay instance stored its CA first (then read that one). */
  async insertRelayCa(ca: { certificatePem: string; sealedKey: string; fingerprint256: string; at: Date }): Promise<boolean> {
    const rows = await this.db.query(
      'INSERT INTO relay_ca (id, certificate_pem, private_key, fingerprint256, created_at) VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING id',
      [ca.certificatePem, ca.sealedKey, ca.fingerprint256, ca.at],
    )
    return rows.length === 1
  }

  async tenantExists(tenantId: string): Promise<boolean> {
    return (await this.db.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId])).length === 1
  }

  /** false when the id is taken (by any tenant). */
  async createGateway(gateway: { id: string; tenantId: string; name: string; at: Date }): Promise<boolean> {
    const rows = await this.db.query(
      `INSERT INTO gateways (id, tenant_id, name, secret_hash, enrollment_state, created_at) VALUES ($1, $2, $3, NULL, 'created', $4)
       ON CONFLICT (id) DO NOTHING RETURNING id`,
      [gateway.id, gateway.tenantId, gateway.name, gateway.at],
    )
    return rows.length === 1
  }

  async getGateway(gatewayId: string): Promise<GatewayIdentityRow | undefined> {
    const [r] = await this.db.query(
      `SELECT ${IDENTITY_COLUMNS} FROM gateways g LEFT JOIN gateway_certificates c ON c.serial = g.current_serial WHERE g.id = $1`,
      [gatewayId],
    )
    return r ? toIdentity(r) : undefined
  }

  async listGateways(tenantId?: string): Promise<GatewayIdentityRow[]> {
    const rows = await this.db.query(
      `SELECT ${IDENTITY_COLUMNS} FROM gateways g LEFT JOIN gateway_certificates c ON c.serial = g.current_serial
       WHERE ($1::text IS NULL OR g.tenant_id = $1) ORDER BY g.id`,
      [tenantId ?? null],
    )
    return rows.map(toIdentity)
  }

  /**
   * Stores a new code for a gateway and invalidates its older unused ones, in one statement. Nothing is stored
   * for a revoked gateway (returns false).
   */
  async insertCode(code: { hash: string; gatewayId: string; expiresAt: Date; at: Date }): Promise<boolean> {
    const rows = await this.db.query(
      `WITH gw AS (SELECT id FROM gateways WHERE id = $2 AND enrollment_state <> 'revoked'),
       old AS (UPDATE enrollment_codes SET invalidated_at = $4
               WHERE gateway_id IN (SELECT id FROM gw) AND used_at IS NULL AND invalidated_at IS NULL RETURNING hash)
       INSERT INTO enrollment_codes (hash, gateway_id, expires_at, created_at)
       SELECT $1, id, $3, $4 FROM gw RETURNING hash`,
      [code.hash, code.gatewayId, code.expiresAt, code.at],
    )
    return rows.length === 1
  }

  async findCode(hash: string): Promise<CodeRow | undefined> {
    const [r] = await this.db.query(
      `SELECT c.gateway_id, c.expires_at, c.used_at, c.invalidated_at, g.enrollment_state
       FROM enrollment_codes c JOIN gateways g ON g.id = c.gateway_id WHERE c.hash = $1`,
      [hash],
    )
    if (!r) return undefined
    return {
      gatewayId: String(r.gateway_id),
      expiresAt: date(r.expires_at),
      usedAt: dateOrNull(r.used_at),
      invalidatedAt: dateOrNull(r.invalidated_at),
      gatewayState: r.enrollment_state as EnrollmentState,
    }
  }

  /**
   * Spends a code: succeeds for exactly one caller, and only while the code is unused, not replaced, unexpired
   * and its gateway not revoked. Returns the gateway id, or undefined (then findCode says why).
   */
  async consumeCode(hash: string, at: Date): Promise<string | undefined> {
    const [r] = await this.db.query(
      `UPDATE enrollment_codes c SET used_at = $2
       WHERE c.hash = $1 AND c.used_at IS NULL AND c.invalidated_at IS NULL AND c.expires_at > $2
         AND EXISTS (SELECT 1 FROM gateways g WHERE g.id = c.gateway_id AND g.enrollment_state <> 'revoked')
       RETURNING c.gateway_id`,
      [hash, at],
    )
    return r ? String(r.gateway_id) : undefined
  }

  /**
   * Records the certificate of a (re-)enrollment: it becomes the gateway's only valid one; every other certificate
   * of the gateway is revoked in the same statement. Returns the serials revoked, or undefined when the gateway was
   * revoked meanwhile (the new certificate is then stored revoked too).
   */
  async recordEnrollment(gatewayId: string, cert: NewCertificate, at: Date): Promise<{ revoked: string[] } | undefined> {
    const [r] = await this.db.query(
      `WITH gw AS (UPDATE gateways SET enrollment_state = 'enrolled', enrolled_at = $6, current_serial = $2, previous_serial = NULL
                   WHERE id = $1 AND enrollment_state <> 'revoked' RETURNING id),
       ins AS (INSERT INTO gateway_certificates (serial, gateway_id, not_before, not_after, public_key_sha256, issued_at, revoked_at)
               VALUES ($2, $1, $3, $4, $5, $6, CASE WHEN EXISTS (SELECT 1 FROM gw) THEN NULL ELSE $6::timestamptz END) RETURNING serial),
       rev AS (UPDATE gateway_certificates SET revoked_at = $6
               WHERE gateway_id = $1 AND revoked_at IS NULL AND serial <> $2 AND EXISTS (SELECT 1 FROM gw) RETURNING serial)
       SELECT (SELECT count(*) FROM gw)::int AS updated, (SELECT count(*) FROM ins)::int AS inserted, ARRAY(SELECT serial FROM rev) AS revoked`,
      [gatewayId, cert.serial, cert.notBefore, cert.notAfter, cert.publicKeySha256, at],
    )
    if (!r || Number(r.updated) !== 1) return undefined
    return { revoked: (r.revoked as string[] | null) ?? [] }
  }

  /**
   * Records a renewal: the new certificate becomes current, the presented one previous; every other certificate
   * of the gateway is revoked. Only when the presented serial is still the current or previous one and the gateway
   * is enrolled (a concurrent revocation or renewal wins). Returns the serials revoked, or undefined.
   */
  async recordRenewal(gatewayId: string, presentedSerial: string, cert: NewCertificate, at: Date): Promise<{ revoked: string[] } | undefined> {
    const [r] = await this.db.query(
      `WITH gw AS (UPDATE gateways SET current_serial = $2, previous_serial = $7
                   WHERE id = $1 AND enrollment_state = 'enrolled' AND (current_serial = $7 OR previous_serial = $7) RETURNING id),
       ins AS (INSERT INTO gateway_certificates (serial, gateway_id, not_before, not_after, public_key_sha256, issued_at)
               SELECT $2, $1, $3::timestamptz, $4::timestamptz, $5, $6::timestamptz FROM gw RETURNING serial),
       rev AS (UPDATE gateway_certificates SET revoked_at = $6
               WHERE gateway_id = $1 AND revoked_at IS NULL AND serial <> $2 AND serial <> $7 AND EXISTS (SELECT 1 FROM gw) RETURNING serial)
       SELECT (SELECT count(*) FROM gw)::int AS updated, ARRAY(SELECT serial FROM rev) AS revoked`,
      [gatewayId, cert.serial, cert.notBefore, cert.notAfter, cert.publicKeySha256, at, presentedSerial],
    )
    if (!r || Number(r.updated) !== 1) return undefined
    return { revoked: (r.revoked as string[] | null) ?? [] }
  }

  /**
   * Revokes a gateway for good: state, reason, who; its unused codes invalidated and every certificate revoked,
   * in one statement. undefined for an unknown gateway; an already revoked one keeps its first reason.
   */
  async revokeGateway(gatewayId: string, reason: string, actor: string, at: Date): Promise<{ tenantId: string; revoked: string[]; already: boolean } | undefined> {
    const [r] = await this.db.query(
      `WITH before AS (SELECT id, tenant_id, enrollment_state FROM gateways WHERE id = $1),
       gw AS (UPDATE gateways SET enrollment_state = 'revoked', revoked_at = $4, revoked_reason = $2, revoked_by = $3, current_serial = NULL, previous_serial = NULL
              WHERE id = $1 AND enrollment_state <> 'revoked' RETURNING id),
       codes AS (UPDATE enrollment_codes SET invalidated_at = $4 WHERE gateway_id = $1 AND used_at IS NULL AND invalidated_at IS NULL RETURNING hash),
       rev AS (UPDATE gateway_certificates SET revoked_at = $4 WHERE gateway_id = $1 AND revoked_at IS NULL RETURNING serial)
       SELECT b.tenant_id, b.enrollment_state, (SELECT count(*) FROM codes)::int AS codes, ARRAY(SELECT serial FROM rev) AS revoked FROM before b`,
      [gatewayId, reason, actor, at],
    )
    if (!r) return undefined
    return { tenantId: String(r.tenant_id), revoked: (r.revoked as string[] | null) ?? [], already: r.enrollment_state === 'revoked' }
  }

  async getCertificate(serial: string): Promise<CertificateRow | undefined> {
    const [r] = await this.db.query('SELECT * FROM gateway_certificates WHERE serial = $1', [serial])
    return r ? toCertificate(r) : undefined
  }

  /** Revoked certificates that have not expired yet: what a CRL must list. */
  async listRevokedCertificates(now: Date): Promise<CertificateRow[]> {
    const rows = await this.db.query('SELECT * FROM gateway_certificates WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, serial', [now])
    return rows.map(toCertificate)
  }
}
