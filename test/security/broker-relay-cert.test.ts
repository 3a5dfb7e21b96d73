/**
 * Certificates with CN `relay:<name>` have full access to the bus: they get the same checks as a gateway's
 * (issued by the relay CA, the current serial for that name, not revoked), on the embedded broker and on Mosquitto
 * (a superseded relay certificate goes into the CRL).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { reloadMosquitto, writeMosquittoConfig, type MosquittoConfigOptions } from '../../cloud-relay/src/broker/mosquitto-config.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { closedPort } from '../helpers/free-port.js'
import { tryConnect } from '../broker/fixtures/clients.js'
import { startMosquitto } from '../broker/fixtures/mosquitto.js'
import { testPki, type ClientCert } from '../broker/fixtures/pki.js'
import type { RelayCertificates } from '../../cloud-relay/src/broker/relay-certificates.js'

function relayOptions(caPem: string, cert: { certPem: string; keyPem: string }, commonName: string) {
  return { ca: caPem, cert: cert.certPem, key: cert.keyPem, clientId: commonName, username: commonName }
}

t.test('embedded broker: a relay certificate is checked like a gateway\'s', async (t) => {
  const { pki, server, client } = await testPki('relay-cert-aedes')
  let registry: RelayCertificates | undefined
  const { logger, lines } = captureLogger()
  const counters = new Counters()
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, tls: { port: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
    authorizeCertificate: () => ({ ok: false, reason: 'no gateways here' }),
    authorizeRelayCertificate: (identity) => registry?.decide(identity) ?? { ok: false, reason: 'no relay certificate registered yet' },
  }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtts://127.0.0.1:${broker.tlsPort}`
  const connect = async (cert: ClientCert | { certPem: string; keyPem: string }, cn: string) => {
    const outcome = await tryConnect(url, relayOptions(pki.caCertPem, cert, cn))
    if (outcome.kind === 'connected') await outcome.client.endAsync()
    return outcome.kind
  }

  const forged = await client('relay:main')
  t.equal(await connect(forged, 'relay:main'), 'refused', 'a relay:main certificate the relay never registered (signed with a stolen CA key, or a leftover) is refused')
  const { RelayCertificates } = await import('../../cloud-relay/src/broker/relay-certificates.js')
  registry = new RelayCertificates({ pki, clock: systemClock })
  const first = await registry.issue('main')
  t.equal(await connect(first, 'relay:main'), 'connected', 'the current relay:main certificate gets in')
  const second = await registry.issue('main')
  t.equal(await connect(second, 'relay:main'), 'connected', 'its successor gets in')
  t.equal(await connect(first, 'relay:main'), 'refused', 'the superseded one is refused')
  const monitor = await registry.issue('monitor')
  t.equal(await connect(monitor, 'relay:monitor'), 'connected', 'another relay name has its own current certificate')
  registry.revoke(monitor.serial, 'test')
  t.equal(await connect(monitor, 'relay:monitor'), 'refused', 'a revoked relay certificate is refused')
  const refusals = lines().filter((l) => l.msg === 'broker refused a client' && typeof l.serial === 'string')
  t.ok(refusals.some((l) => l.serial === first.serial && /superseded/.test(String(l.why))), 'the log says it was superseded, with its serial')
  t.ok(refusals.some((l) => l.serial === monitor.serial && /revoked/.test(String(l.why))), 'and that one was revoked')
  t.same(registry.revokedCertificates().map((c) => c.serial).sort(), [first.serial, monitor.serial].sort(), 'both go into the CRL')
  t.equal(counters.get('broker.auth_rejected.relay_certificate_refused'), 3)
  t.equal(await connect(forged, 'relay:main'), 'refused', 'the unregistered one is still refused')
})

t.test('Mosquitto: a superseded relay certificate is in the CRL and refused', async (t) => {
  const { pki } = await testPki('relay-cert-mosquitto')
  const dir = await mkdtemp(join(tmpdir(), 'mosq-relaycert-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await closedPort()
  const options: MosquittoConfigOptions = { configDir: dir, host: '127.0.0.1', port, ...(process.getuid?.() === 0 ? { user: 'root' } : {}) }
  const files = await writeMosquittoConfig(options, { pki, revoked: { certificates: [], gateways: [] } })
  const mosquitto = await startMosquitto(files.confFile, port)
  t.teardown(() => mosquitto.stop())
  const url = `mqtts://127.0.0.1:${port}`
  const old = { certPem: await readFile(files.relayCertFile, 'utf8'), keyPem: await readFile(files.relayKeyFile, 'utf8') }
  const before = await tryConnect(url, relayOptions(pki.caCertPem, old, files.relayClientId))
  t.equal(before.kind, 'connected', 'the relay certificate gets in')
  if (before.kind === 'connected') await before.client.endAsync()

  // The operator replaces the relay's certificate (it leaked, or it is due): the old one must stop working at once.
  await writeMosquittoConfig(options, { pki, revoked: { certificates: [], gateways: [] }, renewRelayCertificate: true } as Parameters<typeof writeMosquittoConfig>[1])
  const fresh = { certPem: await readFile(files.relayCertFile, 'utf8'), keyPem: await readFile(files.relayKeyFile, 'utf8') }
  t.not(fresh.certPem, old.certPem, 'a new relay certificate was written')
  reloadMosquitto(mosquitto.process)
  await eventually(() => /Reloading config/.test(mosquitto.log()) || undefined, 'Mosquitto to reload')
  const after = await tryConnect(url, relayOptions(pki.caCertPem, old, files.relayClientId))
  t.not(after.kind, 'connected', 'the superseded relay certificate is refused')
  if (after.kind === 'refused') t.match(after.error.message, /certificate revoked/, 'Mosquitto says "certificate revoked": it is in the CRL')
  if (after.kind === 'connected') await after.client.endAsync()
  const now = await tryConnect(url, relayOptions(pki.caCertPem, fresh, files.relayClientId))
  t.equal(now.kind, 'connected', 'the new one gets in')
  if (now.kind === 'connected') await now.client.endAsync()

  await t.test('the list survives the next rewrite (a start, a revocation)', async (t) => {
    await writeMosquittoConfig(options, { pki, revoked: { certificates: [], gateways: [] } })
    reloadMosquitto(mosquitto.process)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const again = await tryConnect(url, relayOptions(pki.caCertPem, old, files.relayClientId))
    t.not(again.kind, 'connected', 'still refused after the CRL was rewritten')
  })
})
