import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { topics } from '../../gateway/protocol/topics.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { MqttUplink } from '../../gateway/src/mqtt/uplink.js'
import { outboxKeys } from '../../gateway/src/outbox/outbox-store.js'
import { ConnectProxy } from '../helpers/connect-proxy.js'
import { eventually } from '../helpers/eventually.js'
import { closedPort } from '../helpers/free-port.js'
import { endpointData, makeBox, makePki, TlsBroker } from './fixtures/tls-broker.js'

// The uplink's transports against aedes behind mutual TLS: mqtts and wss with the box's client certificate,
// refusals that say what to do, fallback from an unreachable mqtts URL to wss, and tunnels through an HTTP proxy.
const root = await mkdtemp(join(tmpdir(), 'uplink-transports-'))
const pki = await makePki()
const broker = await TlsBroker.start(pki)
const credentials = { username: 'box', password: 's3cret:/@' }
const proxy = await ConnectProxy.start({ auth: credentials })
const clientCert = await pki.issueClientCertificate('gw-test')
const tls = { keyPem: clientCert.keyPem, certPem: clientCert.certPem, caPem: pki.caCertPem }
t.teardown(async () => {
  await proxy.close()
  await broker.close()
  await rm(root, { recursive: true, force: true })
})
let boxes = 0
const GW = 'gw-test'
const dir = () => join(root, `b${++boxes}`)

async function deliversOne(box: Awaited<ReturnType<typeof makeBox>>, endpointId: string): Promise<void> {
  await box.uplink.publishDurable(outboxKeys.endpoint('pbx1', endpointId), 'endpoint', endpointData(endpointId, 'busy'), topics.endpoint(GW))
  await eventually(() => broker.endpointMessages().some((m) => m.data.endpointId === endpointId), `endpoint ${endpointId} at the broker`)
  await eventually(() => box.outbox.size === 0, 'the outbox to drain')
}

t.test('a client certificate from another CA is refused, logged with what to do, counted', async (t) => {
  const rogueCa = await makePki('Rogue CA')
  const rogue = await rogueCa.issueClientCertificate('gw-test')
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${broker.mqttsPort}`], tls: { keyPem: rogue.keyPem, certPem: rogue.certPem, caPem: pki.caCertPem } }, dir())
  t.teardown(box.stop)
  const refusalsBefore = broker.tlsRefusals.length
  const connectedBefore = broker.connectedCns.length
  box.uplink.start()
  // Node's TLS server (aedes here) checks the certificate after the TLS 1.3 handshake and closes without an alert;
  // Mosquitto sends one (ERR_SSL_TLSV1_ALERT_UNKNOWN_CA). Either way the box says what to do.
  const line = await eventually(() => box.lines().find((l) => l.level === 50 && /refused this box's client certificate/.test(l.msg)), 'the refusal to be logged')
  t.match(line.msg, /enroll the box again/, 'the log line names the fix')
  t.ok(box.counters.get('uplink.closed_before_connack') + box.counters.get('uplink.tls_rejected') >= 1, 'counted')
  t.ok(broker.tlsRefusals.length > refusalsBefore, 'the broker refused the handshake')
  t.equal(box.uplink.connected, false)
  t.equal(broker.connectedCns.length, connectedBefore, 'no MQTT session was opened')
})

t.test('no client certificate at all is refused too', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${broker.mqttsPort}`], caPem: pki.caCertPem }, dir())
  t.teardown(box.stop)
  box.uplink.start()
  await eventually(() => box.lines().find((l) => l.level === 50 && /client certificate/.test(l.msg)), 'the refusal to be logged')
  t.equal(box.uplink.connected, false)
})

t.test("a broker whose certificate the box does not trust is refused by the box, with a clear log", async (t) => {
  const other = await makePki('Some other CA')
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${broker.mqttsPort}`], tls: { ...tls, caPem: other.caCertPem } }, dir())
  t.teardown(box.stop)
  box.uplink.start()
  const line = await eventually(() => box.lines().find((l) => l.level === 50 && /server certificate is not trusted/.test(l.msg)), 'the refusal to be logged')
  t.match(line.msg, /relay\.caFile/)
  t.equal(box.uplink.connected, false)
})

t.test("a box clock a day behind the broker's certificate: a clear error naming the clock", async (t) => {
  // The broker's certificate starts tomorrow (minus the CA's 10 min backdating): to this box it is not yet valid.
  const future = await TlsBroker.start(pki, {}, Date.now() + 24 * 3600_000)
  t.teardown(() => future.close())
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${future.mqttsPort}`], tls }, dir())
  t.teardown(box.stop)
  box.uplink.start()
  const line = await eventually(() => box.lines().find((l) => l.level === 50 && /not yet valid by this box's clock/.test(l.msg)), 'the clock error to be logged')
  t.match(line.msg, /check the box's date and time \(NTP\)/)
  t.equal(box.uplink.connected, false)
})

t.test('falls back from an unreachable mqtts URL to wss, logs the transport, keeps using it', async (t) => {
  const dead = await closedPort()
  const wss = `wss://127.0.0.1:${broker.wssPort}/mqtt`
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${dead}`, wss], tls, attemptsPerUrl: 2 }, dir())
  t.teardown(box.stop)
  box.uplink.start()
  await eventually(() => box.uplink.connected, 'the box to connect over wss', 15_000)
  t.equal(box.uplink.transportUrl, wss)
  const switched = box.lines().find((l) => /trying the next one/.test(l.msg))
  t.equal(switched?.from, `mqtts://127.0.0.1:${dead}`)
  t.equal(switched?.to, wss)
  t.ok(box.lines().find((l) => l.msg === 'relay transport in use' && l.url === wss), 'the transport in use is logged')
  t.equal(box.counters.get('uplink.transport_switches'), 1)
  await deliversOne(box, '401')
})

t.test('wss through an HTTP CONNECT proxy with Basic auth', async (t) => {
  const box = await makeBox({ urls: [`wss://127.0.0.1:${broker.wssPort}/mqtt`], tls, proxyUrl: proxy.url(credentials) }, dir())
  t.teardown(box.stop)
  const before = proxy.tunnels.length
  box.uplink.start()
  await eventually(() => box.uplink.connected, 'the box to connect through the proxy')
  t.same(proxy.tunnels.slice(before), [`127.0.0.1:${broker.wssPort}`], 'the proxy tunnelled to the wss port')
  await deliversOne(box, '501')
})

t.test('mqtts through the HTTP CONNECT proxy as well', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${broker.mqttsPort}`], tls, proxyUrl: proxy.url(credentials) }, dir())
  t.teardown(box.stop)
  const before = proxy.tunnels.length
  box.uplink.start()
  await eventually(() => box.uplink.connected, 'the box to connect through the proxy')
  t.same(proxy.tunnels.slice(before), [`127.0.0.1:${broker.mqttsPort}`])
  t.ok(broker.connectedCns.includes('gw-test'), 'the client certificate went through the tunnel')
  await deliversOne(box, '601')
})

t.test('wrong proxy credentials: refused with a log line that says where to put them', async (t) => {
  const box = await makeBox({ urls: [`wss://127.0.0.1:${broker.wssPort}/mqtt`], tls, proxyUrl: proxy.url({ username: 'box', password: 'wrong' }) }, dir())
  t.teardown(box.stop)
  const before = proxy.refused.length
  box.uplink.start()
  const line = await eventually(() => box.lines().find((l) => l.level === 50 && /refused CONNECT/.test(l.msg)), 'the proxy refusal to be logged')
  t.match(line.msg, /407/)
  t.match(line.msg, /user:password@ in relay\.proxyUrl/)
  t.ok(proxy.refused.slice(before).some((r) => r.status === 407))
  t.equal(box.uplink.connected, false)
})

t.test('bad URLs are refused at construction with the fix', async (t) => {
  t.throws(() => makeBoxSync({ urls: ['http://relay:80'] }), /use mqtt:\/\/, mqtts:\/\/, ws:\/\/ or wss:\/\//)
  t.throws(() => makeBoxSync({ urls: ['not a url'] }), /is not a URL/)
  t.throws(() => makeBoxSync({ urls: ['mqtts://relay:8883'], proxyUrl: 'socks5://proxy:1080' }), /only http:\/\/ proxies/)
  t.throws(() => makeBoxSync({ urls: [] }), /at least one broker URL/)
})

function makeBoxSync(options: { urls: string[]; proxyUrl?: string }): MqttUplink {
  return new MqttUplink({ ...options, gatewayId: GW, version: 'x', startedAt: 0 }, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters(), nextSeq: () => 1 })
}
