import { createHash } from 'node:crypto'

/** The fields of an AppLogin that the digest covers (research B.2) [C]. */
export interface AppLoginFields {
  app: string
  domain: string
  sip: string
  guid: string
  dn: string
  /** Sent as compact JSON (JSON.stringify); when absent its segment is left out of the digest. */
  info?: Record<string, unknown>
}

/**
 * hex(SHA-256("app:domain:sip:guid:dn[:info-json]:challenge:password")) [C: AppWebsocket.htm, test vectors in
 * test/innovaphone/login.test.ts]. `pbxObj` is not covered.
 */
export function appLoginDigest(fields: AppLoginFields, challenge: string, password: string): string {
  const parts = [fields.app, fields.domain, fields.sip, fields.guid, fields.dn]
  if (fields.info !== undefined) parts.push(JSON.stringify(fields.info))
  parts.push(challenge, password)
  return createHash('sha256').update(parts.join(':'), 'utf8').digest('hex')
}
