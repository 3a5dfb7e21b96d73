import { randomBytes, X509Certificate } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { request } from 'undici'
import { Relay } from '../../cloud-relay/src/app.js'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { EnrollmentClient } from '../../gateway/src/identity/enrollment-client.js'
import { IdentityStore } from '../../gateway/src/identity/identity-store.js'
import { API_TOKEN } from './fixtures/enrollment-world.js'

const silent = pino({ level: 'silent' })

t.test('the real Relay: CA made once and kept, HTTPS from its own CA, admin API and box enrollment, wrong seal key refused', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'relay-ca-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const config = parseRelayConfig({
    logLevel: 'silent',
    broker: { port: 0, host: '127.0.0.1', relayPassword: 'relay-secret', passwordListener: true },
    database: { pgliteDir: join(dir, 'pglite') },
    secrets: { sealKeyFile: join(dir, 'seal.key') },
    http: { host: '127.0.0.1', port: 0, apiToken: API_TOKEN, tls: { selfIssued: true } },
    enrollment: { brokerUrls: ['mqtts://127.0.0.1:8883'], publicHostnames: ['127.0.0.1', 'localhost'] },
    tenants: [{ id: 'contoso', name: 'Contoso' }],
  })
  const start = async (sealKey?: string) => {
    const relay = new Relay(config, { logger: silent, clock: systemClock, counters: new Counters(), sealKey })
    await relay.start()
    return relay
  }
  const relay = await start()
  const fingerprint = relay.pki.caFingerprint256
  t.match(new X509Certificate(relay.pki.caCertPem).subject, /CN=PBX Presence Relay CA \(/)
  const url = `https://127.0.0.1:${relay.httpPort}`
  const { Agent } = await import('undici')
  const admin = new Agent({ connect: { ca: relay.pki.caCertPem } })
  t.teardown(() => admin.close())
  const created = await request(`${url}/api/v1/tenants/contoso/gateways`, { method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'gw-real', name: 'Real' }), dispatcher: admin })
  t.equal(created.statusCode, 201)
  const { code } = (await created.body.json()) as { code: string }
  const health = await request(`${url}/healthz`, { dispatcher: admin })
  t.equal(health.statusCode, 200, 'the existing routes are served over HTTPS too')
  await health.body.dump()
  await relay.stop()

  // Restart: same CA; the box enrolls with the pin of the CA it saw before the restart.
  const again = await start()
  t.equal(again.pki.caFingerprint256, fingerprint, 'the CA survives a relay restart')
  const box = new EnrollmentClient({ store: new IdentityStore(join(dir, 'box')), clock: systemClock, logger: silent }, { relayUrl: `https://127.0.0.1:${again.httpPort}`, caFingerprint: fingerprint })
  const identity = await box.enroll({ code })
  t.equal(identity.gatewayId, 'gw-real')
  t.same(identity.brokerUrls, ['mqtts://127.0.0.1:8883'])
  t.ok(again.enrollment.isCertificateAllowed('gw-real', again.pki.verifyClientCertificate(identity.certPem).serial))
  t.equal((await again.enrollment.getGateway('gw-real'))?.tenantId, 'contoso')
  const renewed = await box.renew()
  t.not(renewed.certPem, identity.certPem, 'renewal over the real relay')
  await again.stop()

  const wrong = new Relay(config, { logger: silent, clock: systemClock, counters: new Counters(), sealKey: randomBytes(32).toString('base64') })
  await t.rejects(wrong.start(), { code: 'RELAY_CA_SEAL_MISMATCH', message: /Start the relay with the original key/ })
  await wrong.stop().catch(() => undefined)
})

t.test('broker.tls.ipAddresses: addresses go into the broker certificate; a name or a broken address is refused in words', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'relay-ip-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const base = (ipAddresses: string[]) => ({
    logLevel: 'silent',
    broker: { port: 0, host: '127.0.0.1', relayPassword: 'relay-secret', tls: { port: 0, dnsNames: ['relay.example'], ipAddresses } },
    database: { pgliteDir: join(dir, 'pglite') },
    secrets: { sealKeyFile: join(dir, 'seal.key') },
    http: { host: '127.0.0.1', port: 0, apiToken: API_TOKEN },
    tenants: [{ id: 'contoso', name: 'Contoso' }],
  })
  t.throws(() => parseRelayConfig(base(['relay.example'])), /ipAddresses/, 'a host name is not an address')
  const relay = new Relay(parseRelayConfig(base(['1.2.3'])), { logger: silent, clock: systemClock, counters: new Counters() })
  await t.rejects(relay.start(), /broker\.tls\.ipAddresses holds "1\.2\.3", which is not an IP address/, 'a broken address stops the start with the field and an example')
  await relay.stop().catch(() => undefined)

  const good = new Relay(parseRelayConfig(base(['10.0.2.100', '2001:db8::7'])), { logger: silent, clock: systemClock, counters: new Counters() })
  await good.start()
  t.teardown(() => good.stop())
  const { connect } = await import('node:tls')
  const san = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: good.broker!.tlsPort!, rejectUnauthorized: false }, () => {
      resolve(socket.getPeerX509Certificate()?.subjectAltName ?? '')
      socket.destroy()
    })
    socket.once('error', reject)
  })
  t.match(san, /DNS:relay\.example/)
  t.match(san, /IP Address:10\.0\.2\.100/, 'the IPv4 address is in the certificate')
  t.match(san, /IP Address:2001:DB8:0:0:0:0:0:7/i, 'and the IPv6 one')
  t.match(san, /IP Address:127\.0\.0\.1/, 'and loopback, which the relay itself dials')
})
