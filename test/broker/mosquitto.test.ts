import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { MqttClient } from 'mqtt'
import { renderAcl, revokeOnMosquitto, writeMosquittoConfig, type MosquittoConfigOptions, type RevokedCertificate } from '../../cloud-relay/src/broker/mosquitto-config.js'
import { createEnvelope, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { topics } from '../../gateway/protocol/topics.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { closedPort } from '../helpers/free-port.js'
import { eventually } from '../helpers/eventually.js'
import { certOptions, closed, tryConnect } from './fixtures/clients.js'
import { startMosquitto } from './fixtures/mosquitto.js'
import { testPki } from './fixtures/pki.js'
import { startRecordingRelay } from './fixtures/relay-recorder.js'

const DAY = 86_400_000

function endpointMessage(gatewayId: string, endpointId: string, seq: number): Buffer {
  return encodeEnvelope(createEnvelope('endpoint', { connectorId: 'c1', endpointId, state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: 1, cause: 'call.connected' }, { gatewayId, seq }))
}
function commandMessage(gatewayId: string, endpointId: string): Buffer {
  return encodeEnvelope(createEnvelope('cmd.setDnd', { connectorId: 'c1', endpointId, dnd: true, reason: 'test' }, { gatewayId, seq: 1 }))
}

t.test('renderAcl: patterns per gateway, relay block, revoked gateways denied', async (t) => {
  const acl = renderAcl('relay:main', ['gw9', 'bad id/#'])
  t.match(acl, /^user relay:main\ntopic readwrite pbxgw\/v1\/#$/m)
  t.match(acl, /^user gw9\ntopic deny #$/m)
  t.notMatch(acl, /bad id/, 'an id that is not a topic id never reaches the file')
  t.match(acl, /^pattern write pbxgw\/v1\/%u\/evt\/\+$/m)
  t.match(acl, /^pattern read pbxgw\/v1\/%u\/cmd\/#$/m)
  t.notMatch(acl, /pattern write .*cmd/, 'no write pattern covers cmd/')
  t.notMatch(acl, /pattern write pbxgw\/v1\/%u\/#/, 'no catch-all write pattern')
})

t.test('real Mosquitto from the generated config: mutual TLS, ACL, revocation with reload', async (t) => {
  const { pki, client } = await testPki('mosquitto')
  const other = await testPki('someone else')
  const dir = await mkdtemp(join(tmpdir(), 'mosq-test-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const port = await closedPort()
  const wsPort = await closedPort()
  const options: MosquittoConfigOptions = {
    configDir: dir, host: '127.0.0.1', port, websockets: { port: wsPort }, relayName: 'test',
    // Started as root here: keep root, so Mosquitto can read the 0700 directory on every reload.
    ...(process.getuid?.() === 0 ? { user: 'root' } : {}),
  }
  const gw1Old = await client('gw1')
  // The CRL lists gw1's certificate from before a renewal: only that serial is refused, gw1 itself is not revoked.
  const certificates: RevokedCertificate[] = [{ serial: gw1Old.serial, revokedAt: new Date() }]
  const files = await writeMosquittoConfig(options, { pki, revoked: { certificates, gateways: [] } })
  const conf = await readFile(files.confFile, 'utf8')
  for (const line of ['require_certificate true', 'use_identity_as_username true', 'use_username_as_clientid true', `crlfile ${files.crlFile}`, `acl_file ${files.aclFile}`, 'max_packet_size', 'max_queued_messages', 'persistence true', 'protocol websockets']) {
    t.ok(conf.includes(line), `mosquitto.conf has ${line}`)
  }
  const mosquitto = await startMosquitto(files.confFile, port)
  t.teardown(() => mosquitto.stop())
  const url = `mqtts://127.0.0.1:${port}`
  const relayCert = { certPem: await readFile(files.relayCertFile, 'utf8'), keyPem: await readFile(files.relayKeyFile, 'utf8') }
  const counters = new Counters()
  const { logger, lines } = captureLogger()
  const { link, heard } = await startRecordingRelay({ url, caPem: pki.caCertPem, ...relayCert, clientId: files.relayClientId },
    (id) => (id === 'gw1' || id === 'gw2' ? { ok: true, tenantId: 't1' } : { ok: false, reason: `gateway ${id} is not enrolled` }), { logger, counters })
  t.teardown(() => link.stop())
  const opened: MqttClient[] = []
  t.teardown(() => Promise.all(opened.map((c) => c.endAsync(true).catch(() => undefined))))
  const gw1Cert = await client('gw1')
  const gw2Cert = await client('gw2')

  const gw1 = await tryConnect(url, certOptions(pki.caCertPem, gw1Cert, 'gw1', { clean: false }))
  t.equal(gw1.kind, 'connected', 'gw1 with a good certificate gets in')
  if (gw1.kind !== 'connected') return
  opened.push(gw1.client)
  const gw1Commands: string[] = []
  gw1.client.on('message', (topic, payload) => gw1Commands.push(`${topic} ${JSON.parse(payload.toString()).data.endpointId}`))
  await gw1.client.subscribeAsync(topics.commandFilter('gw1'), { qos: 1 })

  await t.test('wss with a client certificate, identity from the certificate', async (t) => {
    const ws = await tryConnect(`wss://127.0.0.1:${wsPort}/mqtt`, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    t.equal(ws.kind, 'connected', 'gw2 over wss')
    if (ws.kind !== 'connected') return
    await ws.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', 'ws-1', 1), { qos: 1 })
    await heard.waitFor((h) => (h.data as { endpointId?: string }).endpointId === 'ws-1', { what: 'gw2 over wss reached the relay' })
    await ws.client.publishAsync(topics.endpoint('gw1'), endpointMessage('gw1', 'ws-spoof', 1), { qos: 1 })
    await ws.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', 'ws-2', 2), { qos: 1 })
    await heard.waitFor((h) => (h.data as { endpointId?: string }).endpointId === 'ws-2', { what: 'barrier' })
    t.notOk(heard.items.some((h) => (h.data as { endpointId?: string }).endpointId === 'ws-spoof'), 'the ACL holds on wss: gw2 cannot publish as gw1')
    await ws.client.endAsync()
  })

  await t.test('refused at the handshake: foreign CA, expired, revoked serial (CRL), no certificate', async (t) => {
    const superseded = await tryConnect(url, certOptions(pki.caCertPem, gw1Old, 'gw1'))
    t.not(superseded.kind, 'connected', 'gw1\'s superseded certificate (in the CRL) is refused')
    if (superseded.kind === 'refused') t.match(superseded.error.message, /certificate revoked/)
    for (const [what, cert] of [
      ['foreign CA', await other.client('gw2')],
      ['expired', await client('gw2', { now: Date.now() - 3 * DAY, validityDays: 1 })],
    ] as const) {
      const outcome = await tryConnect(url, certOptions(pki.caCertPem, cert, 'gw2'))
      t.not(outcome.kind, 'connected', `${what}: refused`)
    }
    const none = await tryConnect(url, { ca: pki.caCertPem, clientId: 'gw2', username: 'gw2' })
    t.not(none.kind, 'connected', 'no certificate: refused')
    t.match(mosquitto.log(), /certificate verify failed|peer did not return a certificate/, 'Mosquitto logs the refusals')
  })

  await t.test('a rogue gateway with a valid certificate gets nothing that is not its own', async (t) => {
    const rogue = await tryConnect(url, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    if (rogue.kind !== 'connected') return t.fail('gw2 could not connect')
    opened.push(rogue.client)
    const stolen: string[] = []
    rogue.client.on('message', (topic) => stolen.push(topic))
    // Mosquitto 2.0.11 grants these subscriptions (SUBACK QoS) but checks the read ACL on every delivery.
    for (const filter of ['pbxgw/v1/gw1/#', 'pbxgw/v1/gw1/cmd/#', 'pbxgw/v1/+/cmd/#', '#']) await rogue.client.subscribeAsync(filter, { qos: 1 })
    await rogue.client.subscribeAsync(topics.commandFilter('gw2'), { qos: 1 })
    const mark = heard.mark()
    await rogue.client.publishAsync(topics.endpoint('gw1'), endpointMessage('gw1', 'spoof', 5), { qos: 1 })
    await rogue.client.publishAsync(topics.command('gw2', 'setDnd'), commandMessage('gw2', 'own-cmd'), { qos: 1 })
    await rogue.client.publishAsync(topics.command('gw1', 'setDnd'), commandMessage('gw1', 'forged-cmd'), { qos: 1 })
    await rogue.client.publishAsync('pbxgw/v1/gw2/evt/endpoint', Buffer.from('{"not":"an envelope"}'), { qos: 1 })
    // The relay sends gw1 a command: gw1 gets it, the rogue subscribed to gw1's cmd/# does not.
    // Not awaited: the test's gw1 never answers the command.
    link.sendSetDnd('gw1', { connectorId: 'c1', endpointId: 'real-cmd', dnd: true, reason: 'test' }).catch(() => undefined)
    await eventually(() => gw1Commands.some((c) => c.endsWith('real-cmd')) || undefined, 'gw1 to get the relay\'s command')
    await rogue.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', 'barrier', 6), { qos: 1 })
    await heard.waitFor((h) => (h.data as { endpointId?: string }).endpointId === 'barrier', { from: mark, what: 'the barrier message' })
    t.same(heard.since(mark).map((h) => `${h.gatewayId}/${(h.data as { endpointId?: string }).endpointId}`), ['gw2/barrier'], 'the relay handlers got only the legitimate message')
    t.ok(gw1Commands.some((c) => c.endsWith('real-cmd')), 'gw1 got the relay\'s command')
    t.notOk(gw1Commands.some((c) => c.endsWith('forged-cmd')), 'gw1 never got the forged command')
    t.same(stolen.filter((s) => !s.startsWith('pbxgw/v1/gw2/cmd/')), [], 'the rogue received nothing of gw1')
    t.ok(counters.get('relay.invalid_messages') >= 1, 'the payload failing the schema was counted by the relay')
    t.ok(lines().some((l) => l.msg === 'dropped an invalid message'), 'and logged')
  })

  await t.test('client id of another gateway: Mosquitto uses the certificate\'s CN instead, nobody is kicked', async (t) => {
    // use_username_as_clientid: the client id is the CN whatever the box sends, so "gw1" from gw2's certificate is gw2.
    let gw1Closed = false
    gw1.client.once('close', () => { gw1Closed = true })
    const thief = await tryConnect(url, certOptions(pki.caCertPem, gw2Cert, 'gw1', { clean: false }))
    t.equal(thief.kind, 'connected', 'Mosquitto accepts the connection, as gw2')
    if (thief.kind !== 'connected') return
    opened.push(thief.client)
    const stolen: string[] = []
    thief.client.on('message', (topic) => stolen.push(topic))
    link.sendSetDnd('gw1', { connectorId: 'c1', endpointId: 'after-takeover', dnd: true, reason: 'test' }).catch(() => undefined)
    await eventually(() => gw1Commands.some((c) => c.endsWith('after-takeover')) || undefined, 'gw1 to get the command sent after the attempt')
    const mark = heard.mark()
    await thief.client.publishAsync(topics.endpoint('gw1'), endpointMessage('gw1', 'thief', 7), { qos: 1 })
    await thief.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', 'thief-barrier', 8), { qos: 1 })
    await heard.waitFor((h) => (h.data as { endpointId?: string }).endpointId === 'thief-barrier', { from: mark, what: 'barrier' })
    t.same(heard.since(mark).map((h) => h.gatewayId), ['gw2'], 'what it publishes is heard only as gw2')
    t.same(stolen, [], 'it gets none of gw1\'s commands')
    t.notOk(gw1Closed, 'gw1 was not kicked')
    t.notMatch(mosquitto.log(), /Client gw1 already connected, closing old connection/)
    await thief.client.endAsync()
  })

  await t.test('oversized payload: Mosquitto drops it and the client', async (t) => {
    const big = await tryConnect(url, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    if (big.kind !== 'connected') return t.fail('gw2 could not connect')
    const mark = heard.mark()
    big.client.publish(topics.endpoint('gw2'), Buffer.alloc(2 * 1024 * 1024, 0x20), { qos: 1 })
    await closed(big.client)
    big.client.end(true)
    const again = await tryConnect(url, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    if (again.kind !== 'connected') return t.fail('gw2 could not reconnect')
    opened.push(again.client)
    await again.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', 'after-big', 9), { qos: 1 })
    await heard.waitFor((h) => (h.data as { endpointId?: string }).endpointId === 'after-big', { from: mark, what: 'barrier' })
    t.equal(heard.since(mark).length, 1, 'the oversized message never reached the relay')
    t.match(mosquitto.log(), /exceeded|too large|Protocol error|disconnected/i)
  })

  await t.test('revocation with reload: CRL and deny at once, open connection cut', async (t) => {
    const victim = await tryConnect(url, certOptions(pki.caCertPem, gw1Cert, 'gw1'))
    if (victim.kind !== 'connected') return t.fail('gw1 could not reconnect')
    opened.push(victim.client)
    await victim.client.subscribeAsync(topics.commandFilter('gw1'), { qos: 1 })
    certificates.push({ serial: gw1Cert.serial, revokedAt: new Date() })
    await revokeOnMosquitto({ options, pki, revoked: { certificates, gateways: ['gw1'] }, gatewayId: 'gw1', mosquitto: mosquitto.process, kick: { url, caPem: pki.caCertPem } })
    await closed(victim.client)
    t.pass('the open connection was cut')
    const back = await tryConnect(url, certOptions(pki.caCertPem, gw1Cert, 'gw1'))
    t.not(back.kind, 'connected', 'the revoked certificate no longer gets in')
    if (back.kind === 'refused') t.match(back.error.message, /certificate revoked/, 'Mosquitto answers "certificate revoked" (CRL re-read on SIGHUP)')
    const oldCert = await tryConnect(url, certOptions(pki.caCertPem, gw1Old, 'gw1'))
    t.not(oldCert.kind, 'connected', 'an older revoked certificate neither')
    t.match(mosquitto.log(), /Reloading config/)
    const gw2 = await tryConnect(url, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    t.equal(gw2.kind, 'connected', 'other gateways are unaffected')
    if (gw2.kind === 'connected') opened.push(gw2.client)
  })

  await t.test('the relay\'s persistent session keeps QoS 1 messages while it is away', async (t) => {
    await link.stop()
    const gw2 = await tryConnect(url, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    if (gw2.kind !== 'connected') return t.fail('gw2 could not connect')
    opened.push(gw2.client)
    for (let i = 0; i < 20; i++) await gw2.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', `queued-${i}`, 100 + i), { qos: 1 })
    const again = await startRecordingRelay({ url, caPem: pki.caCertPem, ...relayCert, clientId: files.relayClientId }, () => ({ ok: true, tenantId: 't1' }), { logger, counters })
    t.teardown(() => again.link.stop())
    await again.heard.waitFor((h) => (h.data as { endpointId?: string }).endpointId === 'queued-19', { what: 'the last queued message', timeoutMs: 10_000 })
    const got = again.heard.items.map((h) => (h.data as { endpointId?: string }).endpointId).filter((id) => id?.startsWith('queued-'))
    t.same(got, Array.from({ length: 20 }, (_, i) => `queued-${i}`), 'all 20, in order, after the relay came back')
  })
})
