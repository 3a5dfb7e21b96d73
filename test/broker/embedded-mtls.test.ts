import t from 'tap'
import type { MqttClient } from 'mqtt'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import type { CertificateIdentity } from '../../cloud-relay/src/broker/peer-identity.js'
import { createEnvelope, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { topics } from '../../gateway/protocol/topics.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { certOptions, closed, tryConnect } from './fixtures/clients.js'
import { testPki } from './fixtures/pki.js'
import { startRecordingRelay } from './fixtures/relay-recorder.js'

const DAY = 86_400_000

function endpointMessage(gatewayId: string, endpointId: string, seq: number): Buffer {
  return encodeEnvelope(createEnvelope('endpoint', { connectorId: 'c1', endpointId, state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: 1, cause: 'call.connected' }, { gatewayId, seq }))
}

t.test('embedded broker: mutual TLS, identity, ACL, revocation', async (t) => {
  const { pki, server, client } = await testPki('embedded')
  const other = await testPki('someone else')
  const counters = new Counters()
  const { logger, lines } = captureLogger()
  const revokedSerials = new Set<string>()
  const relayCert = await client('relay:test')
  const relaySerial = relayCert.serial
  const asked: CertificateIdentity[] = []
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: false, tls: { port: 0, wsPort: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
    authorizeCertificate: async (identity) => {
      asked.push(identity)
      if (revokedSerials.has(identity.serial)) return { ok: false, reason: `certificate ${identity.serial} of ${identity.gatewayId} is revoked` }
      if (identity.gatewayId === 'gw1' || identity.gatewayId === 'gw2') return { ok: true, tenantId: 't1' }
      return { ok: false, reason: `unknown gateway ${identity.gatewayId}` }
    },
    authorizeRelayCertificate: (identity) => (identity.serial === relaySerial ? { ok: true } : { ok: false, reason: 'not the current relay certificate' }),
  }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const mqtts = `mqtts://127.0.0.1:${broker.tlsPort}`
  const wss = `wss://127.0.0.1:${broker.wsPort}/mqtt`
  const opened: MqttClient[] = []
  t.teardown(() => Promise.all(opened.map((c) => c.endAsync(true).catch(() => undefined))))

  const relayCounters = new Counters()
  const { link, heard } = await startRecordingRelay({ url: mqtts, caPem: pki.caCertPem, certPem: relayCert.certPem, keyPem: relayCert.keyPem, clientId: 'relay:test' },
    (id) => (id === 'gw1' || id === 'gw2' ? { ok: true, tenantId: 't1' } : { ok: false, reason: 'unknown' }), { logger, counters: relayCounters })
  t.teardown(() => link.stop())

  const gw1Cert = await client('gw1')
  const gw2Cert = await client('gw2')

  await t.test('a good certificate gets in over mqtts and over wss', async (t) => {
    const viaTls = await tryConnect(mqtts, certOptions(pki.caCertPem, gw1Cert, 'gw1'))
    t.equal(viaTls.kind, 'connected', 'gw1 over mqtts')
    opened.push(viaTls.client)
    t.match(asked.at(-1), { gatewayId: 'gw1', serial: gw1Cert.serial, fingerprint256: gw1Cert.fingerprint256 }, 'the authorizer sees CN, serial and fingerprint as RelayPki reports them')
    const viaWs = await tryConnect(wss, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    t.equal(viaWs.kind, 'connected', 'gw2 over wss at /mqtt')
    opened.push(viaWs.client)
    await viaWs.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', '201', 1), { qos: 1 })
    await heard.waitFor((h) => h.gatewayId === 'gw2' && h.kind === 'endpoint', { what: 'gw2 endpoint over wss' })
    t.same(broker.connectedGateways().sort(), ['gw1', 'gw2'])
  })

  await t.test('refused at the TLS handshake: unknown CA, expired, no certificate', async (t) => {
    const before = counters.get('broker.tls_rejected')
    const foreign = await other.client('gw1')
    const outcome = await tryConnect(mqtts, certOptions(pki.caCertPem, foreign, 'gw1'))
    t.not(outcome.kind, 'connected', 'a certificate from another CA is refused')
    const expired = await client('gw1', { now: Date.now() - 3 * DAY, validityDays: 1 })
    const expiredOutcome = await tryConnect(mqtts, certOptions(pki.caCertPem, expired, 'gw1'))
    t.not(expiredOutcome.kind, 'connected', 'an expired certificate is refused')
    const expiredWs = await tryConnect(wss, certOptions(pki.caCertPem, expired, 'gw1'))
    t.not(expiredWs.kind, 'connected', 'an expired certificate is refused on wss too')
    const none = await tryConnect(mqtts, { ca: pki.caCertPem, clientId: 'gw1', username: 'gw1' })
    t.not(none.kind, 'connected', 'no client certificate: refused')
    await eventually(() => counters.get('broker.tls_rejected') >= before + 4, 'four TLS refusals counted')
    const logged = lines().filter((l) => l.msg.startsWith('broker refused a client certificate'))
    t.ok(logged.some((l) => l.code === 'CERT_HAS_EXPIRED' && l.commonName === 'gw1' && l.serial === expired.serial), 'the log says the certificate expired, whose it is and its serial')
    t.ok(logged.some((l) => l.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' && l.serial === foreign.serial), 'the log says the certificate is not from the relay CA')
    t.ok(logged.some((l) => l.code === 'NO_CERTIFICATE'), 'and that none was presented')
    t.ok(logged.some((l) => l.transport === 'wss'), 'wss refusals are logged too')
    t.equal(counters.get('broker.tls_rejected.CERT_HAS_EXPIRED'), 2)
  })

  await t.test('refused after the handshake: revoked serial, unknown gateway, client id or username not the CN', async (t) => {
    const old = await client('gw1')
    revokedSerials.add(old.serial)
    const revoked = await tryConnect(mqtts, certOptions(pki.caCertPem, old, 'gw1'))
    t.equal(revoked.kind, 'refused')
    if (revoked.kind === 'refused') t.equal(revoked.error.code, 5, 'CONNACK 5: not authorized')
    t.ok(lines().some((l) => l.msg === 'broker refused a client' && String(l.why).includes('revoked') && l.serial === old.serial), 'logged with the serial and why')
    const unknown = await tryConnect(mqtts, certOptions(pki.caCertPem, await client('gw9'), 'gw9'))
    t.equal(unknown.kind, 'refused', 'a gateway the authorizer does not know is refused')
    const otherId = await tryConnect(mqtts, certOptions(pki.caCertPem, gw2Cert, 'gw1', { username: 'gw2' }))
    t.equal(otherId.kind, 'refused', 'client id other than the CN is refused')
    const otherUser = await tryConnect(mqtts, certOptions(pki.caCertPem, gw2Cert, 'gw2', { username: 'gw1' }))
    t.equal(otherUser.kind, 'refused', 'username other than the CN is refused')
    t.equal(counters.get('broker.auth_rejected.certificate_refused'), 2)
    t.equal(counters.get('broker.auth_rejected.identity_mismatch'), 2)
    t.ok(broker.connectedGateways().includes('gw1'), 'the real gw1 stayed connected through the attempts on its client id')
  })

  await t.test('a rogue gateway with a valid certificate reaches nothing that is not its own', async (t) => {
    const rogue = await tryConnect(mqtts, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    t.equal(rogue.kind, 'connected')
    if (rogue.kind !== 'connected') return
    opened.push(rogue.client)
    const gw = rogue.client
    await t.rejects(gw.subscribeAsync('pbxgw/v1/gw1/#', { qos: 1 }), /Subscribe error/, "subscribing to another gateway's topics: SUBACK 0x80")
    await t.rejects(gw.subscribeAsync('pbxgw/v1/gw1/cmd/#', { qos: 1 }), /Subscribe error/, "subscribing to another gateway's cmd/: refused")
    await t.rejects(gw.subscribeAsync('pbxgw/v1/+/cmd/#', { qos: 1 }), /Subscribe error/, 'cmd/ of all gateways: refused')
    await t.rejects(gw.subscribeAsync('#', { qos: 1 }), /Subscribe error/, 'everything: refused')
    const own = await gw.subscribeAsync('pbxgw/v1/gw2/cmd/#', { qos: 1 })
    t.equal(own[0]?.qos, 1, 'its own cmd/# is allowed')
    const mark = heard.mark()
    // Each refused publish makes aedes close the connection: reconnect for each attempt.
    const attempts: Array<[string, Buffer]> = [
      [topics.endpoint('gw1'), endpointMessage('gw1', '666', 99)],
      [topics.command('gw2', 'setDnd'), encodeEnvelope(createEnvelope('cmd.setDnd', { connectorId: 'c1', endpointId: '1', dnd: true, reason: 'x' }, { gatewayId: 'gw2', seq: 1 }))],
      [topics.command('gw1', 'setDnd'), encodeEnvelope(createEnvelope('cmd.setDnd', { connectorId: 'c1', endpointId: '1', dnd: true, reason: 'x' }, { gatewayId: 'gw1', seq: 1 }))],
      [topics.endpoint('gw2'), Buffer.alloc(1024 * 1024 + 10, 0x20)],
    ]
    const denied = counters.get('broker.publish_denied')
    for (const [topic, payload] of attempts) {
      const attempt = await tryConnect(mqtts, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
      if (attempt.kind !== 'connected') {
        t.fail(`rogue could not connect for ${topic}`)
        continue
      }
      attempt.client.publish(topic, payload, { qos: 1 })
      await closed(attempt.client)
      attempt.client.end(true)
    }
    t.equal(counters.get('broker.publish_denied'), denied + 4, 'four refused publishes counted')
    t.equal(counters.get('broker.publish_denied.foreign_root'), 2, 'under another root (its cmd/ included)')
    t.equal(counters.get('broker.publish_denied.command'), 1, 'under its own cmd/')
    t.equal(counters.get('broker.publish_denied.payload_too_large'), 1)
    t.ok(counters.get('broker.subscribe_denied') >= 4)
    // A legitimate message after the attempts is the barrier: everything before it has been delivered or never will be.
    const legit = await tryConnect(mqtts, certOptions(pki.caCertPem, gw2Cert, 'gw2'))
    if (legit.kind !== 'connected') return t.fail('gw2 could not reconnect')
    opened.push(legit.client)
    await legit.client.publishAsync(topics.endpoint('gw2'), endpointMessage('gw2', '202', 2), { qos: 1 })
    await heard.waitFor((h) => h.gatewayId === 'gw2' && (h.data as { endpointId?: string }).endpointId === '202', { from: mark, what: 'the legitimate message' })
    t.same(heard.since(mark).map((h) => `${h.gatewayId}/${h.kind}/${(h.data as { endpointId?: string }).endpointId}`), ['gw2/endpoint/202'], 'the relay handlers saw only the legitimate message')
    t.ok(lines().filter((l) => l.msg === 'broker denied a publish').every((l) => typeof l.topic === 'string' && typeof l.why === 'string' && l.client === 'gw2'), 'each denial logged with client, topic and why')
  })

  await t.test('disconnectGateway cuts the connection at once and the relay sees the last will', async (t) => {
    const gw1 = await tryConnect(mqtts, certOptions(pki.caCertPem, gw1Cert, 'gw1', {
      will: { topic: topics.status('gw1'), payload: encodeEnvelope(createEnvelope('status', { state: 'offline', version: '1', startedAt: 1, reason: 'connection lost' }, { gatewayId: 'gw1', seq: 50 })), qos: 1, retain: true },
    }))
    if (gw1.kind !== 'connected') return t.fail('gw1 could not connect')
    opened.push(gw1.client)
    await eventually(() => broker.connectedGateways().includes('gw1'), 'gw1 registered')
    const mark = heard.mark()
    revokedSerials.add(gw1Cert.serial)
    t.ok(broker.disconnectGateway('gw1', 'revoked by admin'))
    await closed(gw1.client)
    t.pass('the gateway\'s connection closed')
    await heard.waitFor((h) => h.gatewayId === 'gw1' && h.kind === 'status' && (h.data as { state: string }).state === 'offline', { from: mark, what: 'gw1 last will' })
    t.notOk(broker.connectedGateways().includes('gw1'))
    t.notOk(broker.disconnectGateway('gw1', 'again'), 'a gateway not connected: false')
    const back = await tryConnect(mqtts, certOptions(pki.caCertPem, gw1Cert, 'gw1'))
    t.equal(back.kind, 'refused', 'its certificate no longer gets in')
    t.ok(lines().some((l) => l.msg === "broker cut a gateway's connection" && l.reason === 'revoked by admin'))
  })
})
