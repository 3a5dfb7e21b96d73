/**
 * Verifies a certificate credential's `client_assertion` (RFC 7523 private_key_jwt) the way Entra ID does,
 * as far as research §6 and msal-node's ClientAssertion tell: the JWT is signed with the private key of a
 * certificate uploaded to the app (PS256 + `x5t#S256`, or RS256 + `x5t` for SHA-1 thumbprints), with
 * aud = the token endpoint, iss = sub = the client id, and a lifetime (exp, nbf).
 * The AADSTS codes and wording are assumptions modelled on Entra's documented errors (see README.md).
 */
import { X509Certificate, createHash } from 'node:crypto'
import { decodeProtectedHeader, errors, importX509, jwtVerify, type JWTPayload } from 'jose'

export const JWT_BEARER_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/**
 * Allowed skew on exp/nbf. Entra tolerates a few minutes (assumption: 5); it also matters here because msal
 * signs with the real clock while the simulator's clock may be injected (tests freeze it).
 */
export const ASSERTION_CLOCK_SKEW_SECONDS = 300

export interface UploadedCertificate {
  pem: string
  /** base64url of the SHA-256 of the DER (what `x5t#S256` carries). */
  x5tS256: string
  /** base64url of the SHA-1 of the DER (what `x5t` carries). */
  x5t: string
}

export interface AssertionRejection {
  code: number
  description: string
}

/** Parses the PEM once, at addApp(): a malformed certificate fails the test set-up, not a token request. */
export function uploadCertificate(pem: string): UploadedCertificate {
  const der = new X509Certificate(pem).raw
  return {
    pem,
    x5tS256: createHash('sha256').update(der).digest('base64url'),
    x5t: createHash('sha1').update(der).digest('base64url'),
  }
}

/** undefined when the assertion is valid; else the AADSTS code and description to answer with. */
export async function verifyClientAssertion(
  assertion: string,
  expected: { clientId: string; audience: string; certificate: UploadedCertificate | undefined; nowMs: number },
): Promise<AssertionRejection | undefined> {
  const notRegistered = (what: string): AssertionRejection => ({
    code: 700027,
    description:
      `Client assertion failed signature validation. (Reason - ${what} is not registered on application ` +
      `'${expected.clientId}'. Upload the certificate to the app registration's Certificates & secrets.)`,
  })
  let header: ReturnType<typeof decodeProtectedHeader>
  try {
    header = decodeProtectedHeader(assertion)
  } catch {
    return { code: 50027, description: 'JWT token is invalid or malformed.' }
  }
  const cert = expected.certificate
  const x5tS256 = typeof header['x5t#S256'] === 'string' ? header['x5t#S256'] : undefined
  const x5t = typeof header.x5t === 'string' ? header.x5t : undefined
  if (x5tS256 === undefined && x5t === undefined) {
    return { code: 700027, description: "Client assertion failed signature validation. (Reason - the header has neither 'x5t#S256' nor 'x5t'.)" }
  }
  if (cert === undefined) return notRegistered('no certificate')
  const matches = x5tS256 !== undefined ? x5tS256 === cert.x5tS256 : x5t === cert.x5t
  if (!matches) return notRegistered(`the certificate with identifier '${x5tS256 ?? x5t ?? ''}'`)

  let payload: JWTPayload
  try {
    const alg = header.alg === 'RS256' ? 'RS256' : 'PS256'
    const key = await importX509(cert.pem, alg)
    ;({ payload } = await jwtVerify(assertion, key, { algorithms: ['PS256', 'RS256'], currentDate: new Date(expected.nowMs), clockTolerance: ASSERTION_CLOCK_SKEW_SECONDS }))
  } catch (err) {
    if (err instanceof errors.JWTExpired) {
      return {
        code: 700024,
        description: 'Client assertion is not within its valid time range. Ensure the assertion is fresh (exp in the future).',
      }
    }
    if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'nbf') {
      return { code: 700024, description: 'Client assertion is not within its valid time range (nbf is in the future).' }
    }
    if (err instanceof errors.JWSSignatureVerificationFailed) {
      return {
        code: 700027,
        description:
          'Client assertion failed signature validation. (Reason - the key used to sign the assertion does not match ' +
          'the uploaded certificate.)',
      }
    }
    return { code: 50027, description: `JWT token is invalid or malformed. (${(err as Error).message})` }
  }
  if (typeof payload.exp !== 'number') {
    return { code: 700024, description: "Client assertion contains no 'exp' claim." }
  }
  const aud = Array.isArray(payload.aud) ? payload.aud : [payload.aud]
  if (!aud.some((a) => typeof a === 'string' && a.toLowerCase() === expected.audience.toLowerCase())) {
    return {
      code: 50027,
      description: `Invalid JWT token. The audience of the client assertion must be '${expected.audience}' (got '${aud.join(', ')}').`,
    }
  }
  if (payload.iss?.toLowerCase() !== expected.clientId || payload.sub?.toLowerCase() !== expected.clientId) {
    return {
      code: 700021,
      description: `Client assertion application identifier doesn't match 'client_id' parameter '${expected.clientId}'.`,
    }
  }
  return undefined
}
