/**
 * A packet is refused as soon as its fixed header announces more than the broker takes: nothing of it is buffered.
 * Seen before: one 250 MB PUBLISH to the embedded broker grew the relay by 450 MB before it was refused.
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import t from 'tap'
import mqttPacket from 'mqtt-packet'
import { EmbeddedBroker } from '../../cloud-relay/src/broker/embedded-broker.js'
import { Counters } from '#kernel/counters.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'
import { startGeneratedMosquitto } from '../broker/fixtures/mosquitto.js'
import { testPki, type ClientCert } from '../broker/fixtures/pki.js'

const MIB = 1024 * 1024
const ANNOUNCED = 250_000_000
/** Far more than the limit plus what socket buffers on both sides can hold. */
const GIVE_UP_AFTER = 48 * MIB

/** The remaining-length field of an MQTT fixed header. */
function remainingLength(n: number): Buffer {
  const bytes: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    bytes.push(byte)
  } while (n > 0)
  return Buffer.from(bytes)
}

/**
 * Connects with a client certificate, sends CONNECT, then a PUBLISH header announcing 250 MB and streams its body
 * until the broker closes the connection. Returns how many bytes of the body were written by then.
 */
async function sendHugePublish(port: number, caPem: string, cert: ClientCert, clientId: string): Promise<{ written: number; closed: boolean; rssGrowthMib: number }> {
  const rssBefore = process.memoryUsage().rss
  const socket: TLSSocket = tlsConnect({ host: '127.0.0.1', port, ca: caPem, cert: cert.certPem, key: cert.keyPem, servername: 'localhost' })
  let closed = false
  socket.on('error', () => undefined)
  socket.on('close', () => { closed = true })
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve())
    socket.once('error', reject)
  })
  const connack = new Promise<void>((resolve) => socket.once('data', () => resolve()))
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, username: clientId, clean: true, keepalive: 0 }))
  await connack
  socket.write(Buffer.concat([Buffer.from([0x30]), remainingLength(ANNOUNCED), Buffer.from([0, 20]), Buffer.from('pbxgw/v1/gw1/evt/big')]))
  const chunk = Buffer.alloc(256 * 1024, 0x20)
  let written = 0
  while (!closed && written < GIVE_UP_AFTER) {
    const more = socket.write(chunk)
    written += chunk.length
    if (!more) await new Promise<void>((resolve) => {
      const done = () => { socket.off('drain', done); socket.off('close', done); resolve() }
      socket.on('drain', done)
      socket.on('close', done)
    })
  }
  socket.destroy()
  return { written, closed, rssGrowthMib: Math.round((process.memoryUsage().rss - rssBefore) / MIB) }
}

t.test('embedded broker: a PUBLISH announcing 250 MB is refused from its header', async (t) => {
  const { pki, server, client } = await testPki('packet-size-aedes')
  const { logger, lines } = captureLogger()
  const counters = new Counters()
  const broker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: false, tls: { port: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
    authorizeCertificate: (identity) => (identity.gatewayId === 'gw1' ? { ok: true, tenantId: 't1' } : { ok: false, reason: 'unknown' }),
  }, { logger, counters })
  await broker.start()
  t.teardown(() => broker.stop())
  const result = await sendHugePublish(broker.tlsPort!, pki.caCertPem, await client('gw1'), 'gw1')
  t.comment(`closed after ${(result.written / MIB).toFixed(1)} MiB of body written; this process (client and broker) grew by ${result.rssGrowthMib} MiB`)
  t.ok(result.closed, `the broker closed the connection before the client had written ${GIVE_UP_AFTER / MIB} MiB`)
  await eventually(() => lines().some((l) => l.msg === 'broker closed a connection: the packet announced is too large'), 'the log line')
  const line = lines().find((l) => l.msg === 'broker closed a connection: the packet announced is too large')
  t.equal(line?.announcedBytes, ANNOUNCED, 'the log says how large the packet claimed to be')
  t.equal(counters.get('broker.packet_too_large'), 1, 'and it is counted')

  await t.test('the same over the wss listener', async (t) => {
    const wsBroker = new EmbeddedBroker({ host: '127.0.0.1', port: 0, passwordListener: false, tls: { port: 0, wsPort: 0, caPem: pki.caCertPem, certPem: server.certPem, keyPem: server.keyPem } }, {
      authorizeCertificate: () => ({ ok: true, tenantId: 't1' }),
    }, { logger, counters })
    await wsBroker.start()
    t.teardown(() => wsBroker.stop())
    const { default: mqtt } = await import('mqtt')
    const cert = await client('gw1')
    const gw = await mqtt.connectAsync(`wss://127.0.0.1:${wsBroker.wsPort}/mqtt`, { protocolVersion: 4, reconnectPeriod: 0, clientId: 'gw1', username: 'gw1', ca: pki.caCertPem, cert: cert.certPem, key: cert.keyPem })
    const closed = new Promise<void>((resolve) => gw.once('close', () => resolve()))
    // Many WebSocket frames, each under the frame limit, making up one MQTT packet over the limit.
    const stream = (gw as unknown as { stream: { write(b: Buffer): boolean } }).stream
    stream.write(Buffer.concat([Buffer.from([0x30]), remainingLength(ANNOUNCED), Buffer.from([0, 20]), Buffer.from('pbxgw/v1/gw1/evt/big')]))
    for (let i = 0; i < 8; i++) stream.write(Buffer.alloc(512 * 1024, 0x20))
    await closed
    t.pass('the wss connection was closed')
    gw.end(true)
  })
})

t.test('Mosquitto: max_packet_size refuses the same packet from its header', async (t) => {
  const { pki, client } = await testPki('packet-size-mosquitto')
  const { url } = await startGeneratedMosquitto(t, pki, { prefix: 'mosq-size-' })
  const port = Number(new URL(url).port)
  const result = await sendHugePublish(port, pki.caCertPem, await client('gw1'), 'gw1')
  t.comment(`Mosquitto closed after ${(result.written / MIB).toFixed(1)} MiB of body written`)
  t.ok(result.closed, 'Mosquitto closed the connection')
})
