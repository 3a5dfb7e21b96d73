/**
 * App-only certificate credentials (private_key_jwt) end to end: the real msal-node signs the client
 * assertion, the Graph simulator verifies it against the certificate uploaded to the app.
 */
import { X509Certificate, createHash, webcrypto } from 'node:crypto'
import t from 'tap'
import { SignJWT, importPKCS8 } from 'jose'
import { ensureReflectMetadata } from '#kernel/x509.js'
import { ConfigError, parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { graphError, startHarness } from './fixtures/harness.js'

interface TestCertificate {
  certificatePem: string
  privateKeyPem: string
}

const RSA: webcrypto.RsaHashedKeyGenParams = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
}

/** An RSA 2048 key and a self-signed certificate, as an admin would make with openssl for an app registration. */
async function makeCertificate(cn: string): Promise<TestCertificate> {
  ensureReflectMetadata()
  const x509 = await import('@peculiar/x509')
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: '01',
      name: `CN=${cn}`,
      notBefore: new Date(Date.now() - 3600_000),
      notAfter: new Date(Date.now() + 86_400_000),
      keys,
      signingAlgorithm: RSA,
    },
    webcrypto,
  )
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64')
  const privateKeyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join('\n') ?? ''}\n-----END PRIVATE KEY-----\n`
  return { certificatePem: cert.toString('pem'), privateKeyPem }
}

const [relayCert, otherCert] = await Promise.all([makeCertificate('pbx presence relay'), makeCertificate('someone else')])
const h = await startHarness()
t.teardown(() => h.close())
const certApp = h.sim.addApp({ displayName: 'relay (certificate)', certificatePem: relayCert.certificatePem })
const tokenUrl = `/${h.sim.tenantId}/oauth2/v2.0/token`

t.test('a certificate-only app has no secret to accept', async (t) => {
  t.equal(certApp.clientSecret, '')
  const res = await h.raw('POST', tokenUrl, {
    form: { grant_type: 'client_credentials', client_id: certApp.clientId, client_secret: 'guess', scope: 'https://graph.microsoft.com/.default' },
  })
  t.equal(res.status, 401)
  t.match(res.body, { error: 'invalid_client', error_codes: [7000215] })
})

t.test('real msal-node gets a token with the certificate and setPresence works', async (t) => {
  const issued: string[] = []
  const onToken = (e: { appId: string; outcome: string }): void => {
    issued.push(`${e.appId}:${e.outcome}`)
  }
  h.sim.on('token', onToken)
  t.teardown(() => h.sim.off('token', onToken))
  const client = h.client({ clientId: certApp.clientId, clientSecret: undefined, clientCertificate: relayCert })
  await client.setPresence(h.alice.id, { availability: 'Busy', activity: 'InACall' }, 5)
  t.match(h.sim.getPresence(h.alice.id), { availability: 'Busy', activity: 'InACall' })
  t.same(issued, [`${certApp.clientId}:issued`])
})

t.test('a private key that does not match the uploaded certificate → GRAPH_AUTH saying what to do', async (t) => {
  const client = h.client({
    clientId: certApp.clientId,
    clientSecret: undefined,
    clientCertificate: { certificatePem: relayCert.certificatePem, privateKeyPem: otherCert.privateKeyPem },
  })
  const err = await graphError(() => client.findUser(h.alice.id))
  t.equal(err.code, 'GRAPH_AUTH')
  t.equal(err.status, 401)
  const sha1 = new X509Certificate(relayCert.certificatePem).fingerprint.replaceAll(':', '')
  t.match(err.message, 'the certificate was rejected')
  t.match(err.message, `upload the certificate with thumbprint ${sha1}`)
  t.match(err.message, "Certificates & secrets")
  t.match(err.message, 'check the private key matches')
})

t.test('an app without that certificate → GRAPH_AUTH', async (t) => {
  const client = h.client({ clientId: h.app.clientId, clientSecret: undefined, clientCertificate: relayCert })
  const err = await graphError(() => client.findUser(h.alice.id))
  t.equal(err.code, 'GRAPH_AUTH')
  t.match(err.message, 'the certificate was rejected')
})

t.test('the token endpoint refuses an expired assertion with AADSTS700024', async (t) => {
  const der = new X509Certificate(relayCert.certificatePem).raw
  const key = await importPKCS8(relayCert.privateKeyPem, 'PS256')
  const now = Math.floor(h.sim.now() / 1000)
  const sign = (exp: number, aud = `${h.sim.url}${tokenUrl}`): Promise<string> =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'PS256', typ: 'JWT', 'x5t#S256': createHash('sha256').update(der).digest('base64url') })
      .setAudience(aud)
      .setIssuer(certApp.clientId)
      .setSubject(certApp.clientId)
      .setNotBefore(exp - 600)
      .setExpirationTime(exp)
      .setJti('jti-1')
      .sign(key)
  const post = async (assertion: string) =>
    h.raw('POST', tokenUrl, {
      form: {
        grant_type: 'client_credentials',
        client_id: certApp.clientId,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: assertion,
        scope: 'https://graph.microsoft.com/.default',
      },
    })
  const expired = await post(await sign(now - 600))
  t.equal(expired.status, 401)
  t.match(expired.body, { error: 'invalid_client', error_codes: [700024] })
  const wrongAud = await post(await sign(now + 300, 'https://login.microsoftonline.com/common/oauth2/v2.0/token'))
  t.equal(wrongAud.status, 401)
  t.match(wrongAud.body, { error: 'invalid_client', error_codes: [50027] })
  const fresh = await post(await sign(now + 300))
  t.equal(fresh.status, 200, 'the same assertion, fresh, is accepted')
})

t.test('client options need exactly one credential', async (t) => {
  t.throws(() => h.client({ clientCertificate: relayCert }), /either clientSecret or clientCertificate, not both/)
  t.throws(() => h.client({ clientSecret: undefined }), /a credential is required/)
  t.throws(
    () => h.client({ clientSecret: undefined, clientCertificate: { certificatePem: 'nope', privateKeyPem: relayCert.privateKeyPem } }),
    /certificatePem is not a PEM X.509 certificate/,
  )
})

t.test('config: tenants[].graph takes a secret or a certificate, exactly one', async (t) => {
  const config = (graph: Record<string, unknown>) => ({
    broker: { relayPassword: 'secret' },
    tenants: [{ id: 'acme', graph: { tenantId: 't', clientId: 'c', ...graph } }],
  })
  t.equal(parseRelayConfig(config({ clientSecret: 's' })).tenants[0]?.graph?.clientSecret, 's')
  t.equal(parseRelayConfig(config({ certificateFile: 'a.pem', privateKeyFile: 'k.pem' })).tenants[0]?.graph?.certificateFile, 'a.pem')
  t.throws(() => parseRelayConfig(config({ clientSecret: 's', certificateFile: 'a.pem', privateKeyFile: 'k.pem' })), ConfigError)
  t.throws(() => parseRelayConfig(config({})), ConfigError)
  t.throws(() => parseRelayConfig(config({ certificateFile: 'a.pem' })), ConfigError)
  try {
    parseRelayConfig(config({}))
  } catch (err) {
    t.match((err as Error).message, 'a credential is required')
  }
})
