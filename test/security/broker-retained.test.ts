/**
 * Retained messages live in the broker's memory until someone clears them: a box may keep them only on its own
 * `status` and `link/{connectorId}` topics, at most 64 links, 16 KiB each. Anything else it retains is not kept
 * (embedded broker) or is cleared by the relay right after (Mosquitto, whose ACL cannot limit retain).
 */
import { readFile } from 'node:fs/promises'
import t from 'tap'
import type { MqttClient } from 'mqtt'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import type { TapTest } from '../helpers/tap-types.js'
import { eventually } from '../helpers/eventually.js'
import { certOptions, tryConnect } from '../broker/fixtures/clients.js'
import { startGeneratedMosquitto } from '../broker/fixtures/mosquitto.js'
import { testPki } from '../broker/fixtures/pki.js'
import { retainedUnder } from '../broker/fixtures/watched-client.js'

const KIB = 1024
const LINKS = 70
const ALLOWED_LINKS = 64

/** What a greedy box retains: its status, 70 links, one oversized link, and topics of its own choosing. */
async function retainEverything(gw: MqttClient): Promise<void> {
  const publish = (suffix: string, bytes: number) => gw.publishAsync(`pbxgw/v1/gw1/${suffix}`, Buffer.alloc(bytes, 0x61), { qos: 1, retain: true })
  await publish('status', 200)
  for (let i = 0; i < LINKS; i++) await publish(`link/c${i}`, 200)
  await publish('link/big', 20 * KIB)
  await publish('evt/endpoint', KIB)
  await publish('telemetry', KIB)
  for (let i = 0; i < 5; i++) await publish(`junk/${i}`, 64 * KIB)
}

function expectOnlyAllowed(t: TapTest, retained: Map<string, number>): void {
  const topics = [...retained.keys()]
  t.ok(retained.has('pbxgw/v1/gw1/status'), 'its status is retained')
  t.equal(topics.filter((topic) => /^pbxgw\/v1\/gw1\/link\/c\d+$/.test(topic)).length, ALLOWED_LINKS, `${ALLOWED_LINKS} links are retained, no more`)
  t.same(topics.filter((topic) => !/^pbxgw\/v1\/gw1\/(status|link\/c\d+)$/.test(topic)), [], 'nothing else: no events, no telemetry, no topics of its own choosing, no 20 KiB link')
}

t.test('embedded broker: a box retains only its status and links, within the caps', async (t) => {
  const { pki, server, client } = await testPki('retained-aedes')
  const { logger, lines } = captureLogger()
  const counters = new Counters()
  const relayCert = await client('relay:main')
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: false, tls: { port: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
    authorizeCertificate: (identity) => (identity.gatewayId === 'gw1' ? { ok: true, tenantId: 't1' } : { ok: false, reason: 'unknown' }),
    authorizeRelayCertificate: (identity: { serial: string }) => (identity.serial === relayCert.serial ? { ok: true } : { ok: false, reason: 'not current' }),
  } as ConstructorParameters<typeof EmbeddedBroker>[1], { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const url = `mqtts://127.0.0.1:${broker.tlsPort}`
  const gw = await tryConnect(url, certOptions(pki.caCertPem, await client('gw1'), 'gw1'))
  if (gw.kind !== 'connected') return t.fail('gw1 could not connect')
  t.teardown(() => gw.client.endAsync(true))
  await retainEverything(gw.client)
  const probe = { ca: pki.caCertPem, cert: relayCert.certPem, key: relayCert.keyPem, clientId: 'relay:main', username: 'relay:main' }
  const retained = await eventually(async () => {
    const seen = await retainedUnder(url, probe, 'pbxgw/v1/gw1/#')
    return seen.has('pbxgw/v1/gw1/status') && seen.size >= 1 + ALLOWED_LINKS ? seen : undefined
  }, 'the retained status and links')
  expectOnlyAllowed(t, retained)
  t.ok(gw.client.connected, 'the box stays connected: its messages still flow, they are just not kept')
  t.ok(lines().some((l) => l.msg === 'broker did not retain a message' && l.topic === 'pbxgw/v1/gw1/evt/endpoint' && typeof l.why === 'string'), 'each refusal is logged with topic and why')
  t.ok(counters.get('broker.retain_denied') >= LINKS - ALLOWED_LINKS + 8, 'and counted')

  await t.test('clearing a link frees its place', async (t) => {
    await gw.client.publishAsync('pbxgw/v1/gw1/link/c0', Buffer.alloc(0), { qos: 1, retain: true })
    await gw.client.publishAsync('pbxgw/v1/gw1/link/c69', Buffer.alloc(200, 0x61), { qos: 1, retain: true })
    // aedes sends retained messages after the SUBACK from its store, so a listing may be partial: ask until complete.
    const after = await eventually(async () => {
      const seen = await retainedUnder(url, probe, 'pbxgw/v1/gw1/link/#')
      return seen.size >= ALLOWED_LINKS ? seen : undefined
    }, 'the retained links')
    t.notOk(after.has('pbxgw/v1/gw1/link/c0'), 'the cleared link is gone')
    t.ok(after.has('pbxgw/v1/gw1/link/c69'), 'a new link takes its place')
    t.equal(after.size, ALLOWED_LINKS)
  })
})

t.test('Mosquitto: the relay clears what a box retained where it may not', async (t) => {
  const { pki, client } = await testPki('retained-mosquitto')
  const { files, url } = await startGeneratedMosquitto(t, pki, { prefix: 'mosq-retained-' })
  const { logger, lines } = captureLogger()
  const counters = new Counters()
  const { MosquittoRetainedGuard } = await import('../../cloud-relay/src/broker/mosquitto-retained-guard.js')
  const guardCert = await pki.issueClientCertificate(files.retainedGuardCommonName)
  const guard = new MosquittoRetainedGuard({ url, caPem: pki.caCertPem, certPem: guardCert.certPem, keyPem: guardCert.keyPem }, { logger, counters })
  await guard.start()
  t.teardown(() => guard.stop())
  const gw = await tryConnect(url, certOptions(pki.caCertPem, await client('gw1'), 'gw1'))
  if (gw.kind !== 'connected') return t.fail('gw1 could not connect')
  t.teardown(() => gw.client.endAsync(true))
  await retainEverything(gw.client)
  const probe = { ca: pki.caCertPem, cert: await readFile(files.relayCertFile, 'utf8'), key: await readFile(files.relayKeyFile, 'utf8'), clientId: 'probe' }
  const retained = await eventually(async () => {
    const seen = await retainedUnder(url, probe, 'pbxgw/v1/gw1/#')
    return seen.size === 1 + ALLOWED_LINKS ? seen : undefined
  }, 'Mosquitto to hold only the status and 64 links', 15_000)
  expectOnlyAllowed(t, retained)
  const cleared = await eventually(() => {
    const found = lines().filter((l) => l.msg === 'relay cleared a retained message a gateway may not keep')
    // Six links over the cap, the 20 KiB link, the event and the telemetry; junk/ never got past Mosquitto's ACL.
    return found.length >= LINKS - ALLOWED_LINKS + 3 ? found : undefined
  }, 'a log line per cleared topic')
  t.ok(cleared.some((l) => l.topic === 'pbxgw/v1/gw1/evt/endpoint' && l.gatewayId === 'gw1' && typeof l.why === 'string'), 'one log line per cleared topic, with the gateway and why')
  t.equal(cleared.filter((l) => l.topic === 'pbxgw/v1/gw1/evt/endpoint').length, 1, 'exactly one for that topic')
  t.match(await readFile(files.confFile, 'utf8'), /^max_packet_size \d+$/m, 'Mosquitto refuses oversized packets (max_packet_size)')
})
