/**
 * A box with a valid certificate must not be able to take over another client's MQTT session: not the relay's
 * (`relay:main`, whose link would be kept down and whose persistent session would be wiped) and not another
 * gateway's. The client id is bound to the certificate on both brokers.
 */
import t from 'tap'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { createEnvelope, encodeEnvelope } from '../../gateway/protocol/codec.js'
import { topics } from '../../gateway/protocol/topics.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import type { TapTest } from '../helpers/tap-types.js'
import { eventually } from '../helpers/eventually.js'
import { certOptions, tryConnect } from '../broker/fixtures/clients.js'
import { startGeneratedMosquitto } from '../broker/fixtures/mosquitto.js'
import { testPki, type ClientCert } from '../broker/fixtures/pki.js'
import { watchedClient, type WatchedClient } from '../broker/fixtures/watched-client.js'

function endpointMessage(gatewayId: string, endpointId: string, seq: number): Buffer {
  return encodeEnvelope(createEnvelope('endpoint', { connectorId: 'c1', endpointId, state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: 1, cause: 'call.connected' }, { gatewayId, seq }))
}

interface World {
  url: string
  caPem: string
  relay: WatchedClient
  gw1: WatchedClient
  gw2Cert: ClientCert
  relayClientId: string
  log: () => string
}

/** gw2 (a valid certificate) tries the relay's client id and gw1's, 5 times each; nobody may be kicked. */
async function attack(t: TapTest, world: World, extra: Array<{ what: string; cert: ClientCert; clientId: string }> = []): Promise<void> {
  const attempts = [
    ...Array.from({ length: 5 }, () => ({ what: 'gw2 as the relay', cert: world.gw2Cert, clientId: world.relayClientId })),
    ...Array.from({ length: 5 }, () => ({ what: 'gw2 as gw1', cert: world.gw2Cert, clientId: 'gw1' })),
    ...extra,
  ]
  for (const attempt of attempts) {
    const outcome = await tryConnect(world.url, certOptions(world.caPem, attempt.cert, attempt.clientId, { clean: true }))
    if (outcome.kind === 'connected') await outcome.client.endAsync()
  }
  // Barrier: gw1 publishes, the relay hears it; anything the attempts did to either connection has happened by now.
  if (!world.gw1.client.connected || !world.relay.client.connected) {
    t.fail(`a connection was taken over: relay closed ${world.relay.closes()} time(s), gw1 closed ${world.gw1.closes()} time(s)`)
    return
  }
  await world.gw1.client.publishAsync(topics.endpoint('gw1'), endpointMessage('gw1', 'after-attack', 2), { qos: 1 })
  await eventually(() => world.relay.received.some((m) => m.payload.includes('after-attack')) || undefined, 'the relay to hear gw1 after the attempts')
  t.equal(world.relay.closes(), 0, 'the relay\'s connection was never closed by a box using its client id')
  t.equal(world.gw1.closes(), 0, 'gw1\'s connection was never closed by another box using its client id')
  t.ok(world.relay.client.connected && world.gw1.client.connected, 'both are still connected')
}

t.test('Mosquitto: a box cannot take over the relay\'s or another gateway\'s client id', async (t) => {
  const { pki, client } = await testPki('takeover-mosquitto')
  const { mosquitto, files, url, relayCert } = await startGeneratedMosquitto(t, pki, { prefix: 'mosq-takeover-' })
  const relay = await watchedClient(url, { ca: pki.caCertPem, ...{ cert: relayCert.certPem, key: relayCert.keyPem }, clientId: files.relayClientId, clean: false })
  t.teardown(() => relay.client.endAsync(true))
  await relay.client.subscribeAsync('pbxgw/v1/+/evt/#', { qos: 1 })
  const gw1 = await watchedClient(url, certOptions(pki.caCertPem, await client('gw1'), 'gw1', { clean: false }))
  t.teardown(() => gw1.client.endAsync(true))
  await gw1.client.subscribeAsync(topics.commandFilter('gw1'), { qos: 1 })
  await attack(t, { url, caPem: pki.caCertPem, relay, gw1, gw2Cert: await client('gw2'), relayClientId: files.relayClientId, log: mosquitto.log })
  t.notMatch(mosquitto.log(), /Client (relay:main|gw1) already connected, closing old connection/, 'Mosquitto never closed the relay or gw1 for a newcomer')

  await t.test('the relay\'s persistent session survived: QoS 1 messages sent while it was away arrive', async (t) => {
    await relay.client.endAsync()
    await gw1.client.publishAsync(topics.endpoint('gw1'), endpointMessage('gw1', 'while-away', 3), { qos: 1 })
    const back = await watchedClient(url, { ca: pki.caCertPem, cert: relayCert.certPem, key: relayCert.keyPem, clientId: files.relayClientId, clean: false })
    t.teardown(() => back.client.endAsync(true))
    await eventually(() => back.received.some((m) => m.payload.includes('while-away')) || undefined, 'the queued message')
    t.pass('the message queued in the relay\'s session was delivered')
  })
})

t.test('embedded broker (aedes): neither a box nor another relay certificate can take over a client id', async (t) => {
  const { pki, server, client } = await testPki('takeover-aedes')
  const { logger } = captureLogger()
  const relayCert = await client('relay:main')
  const monitorCert = await client('relay:monitor')
  const relaySerials = new Set([relayCert.serial, monitorCert.serial])
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: false, tls: { port: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
    authorizeCertificate: (identity) => (['gw1', 'gw2'].includes(identity.gatewayId) ? { ok: true, tenantId: 't1' } : { ok: false, reason: 'unknown' }),
    authorizeRelayCertificate: (identity: { serial: string }) => (relaySerials.has(identity.serial) ? { ok: true } : { ok: false, reason: 'not a current relay certificate' }),
  } as ConstructorParameters<typeof EmbeddedBroker>[1], { logger, counters: new Counters() })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtts://127.0.0.1:${broker.tlsPort}`
  const relay = await watchedClient(url, { ca: pki.caCertPem, cert: relayCert.certPem, key: relayCert.keyPem, clientId: 'relay:main', username: 'relay:main', clean: false })
  t.teardown(() => relay.client.endAsync(true))
  await relay.client.subscribeAsync('pbxgw/v1/+/evt/#', { qos: 1 })
  const gw1 = await watchedClient(url, certOptions(pki.caCertPem, await client('gw1'), 'gw1', { clean: false }))
  t.teardown(() => gw1.client.endAsync(true))
  await attack(t, { url, caPem: pki.caCertPem, relay, gw1, gw2Cert: await client('gw2'), relayClientId: 'relay:main', log: () => '' }, [
    { what: 'another relay certificate as relay:main', cert: monitorCert, clientId: 'relay:main' },
    { what: 'another relay certificate as gw1', cert: monitorCert, clientId: 'gw1' },
  ])
})
