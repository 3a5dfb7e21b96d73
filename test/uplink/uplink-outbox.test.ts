import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { topics } from '../../gateway/protocol/topics.js'
import { outboxKeys } from '../../gateway/src/outbox/outbox-store.js'
import { eventually } from '../helpers/eventually.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { endpointData, makeBox, makePki, TlsBroker } from './fixtures/tls-broker.js'

// The box's side of the tunnel against aedes behind mutual TLS: the outbox replayed in seq order after every
// connect and then the snapshot, nothing handed to mqtt.js while the link is down, coalescing while cut off.
const root = await mkdtemp(join(tmpdir(), 'uplink-outbox-'))
const pki = await makePki()
const broker = await TlsBroker.start(pki)
const proxy = await FaultProxy.start({ port: broker.mqttsPort })
const clientCert = await pki.issueClientCertificate('gw-test')
const tls = { keyPem: clientCert.keyPem, certPem: clientCert.certPem, caPem: pki.caCertPem }
t.teardown(async () => {
  await proxy.close()
  await broker.close()
  await rm(root, { recursive: true, force: true })
})
let boxes = 0
const GW = 'gw-test'

t.test('mTLS connect, birth, durable publish acknowledged and removed from the outbox', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${broker.mqttsPort}`], tls }, join(root, `b${++boxes}`))
  t.teardown(box.stop)
  box.uplink.start()
  await eventually(() => box.uplink.connected, 'the box to connect')
  t.ok(broker.connectedCns.includes('gw-test'), 'the broker saw the client certificate of gw-test')
  await eventually(() => broker.messages.find((m) => m.topic === topics.status(GW) && m.data.state === 'online'), 'the birth message')
  const onDisk = await box.uplink.publishDurable(outboxKeys.endpoint('pbx1', '201'), 'endpoint', endpointData('201', 'busy'), topics.endpoint(GW))
  t.equal(onDisk, true, 'publishDurable resolves true once on disk')
  await eventually(() => broker.endpointMessages().find((m) => m.data.endpointId === '201'), 'the endpoint message at the broker')
  await eventually(() => box.outbox.size === 0, 'the acknowledged record to leave the outbox')
  t.equal(box.counters.get('outbox.acked'), 1)
})

t.test('while cut off nothing goes to the broker; on reconnect the outbox is replayed in seq order, then the snapshot', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${proxy.port}`], tls, gatewayId: 'gw-test' }, join(root, `b${++boxes}`))
  t.teardown(box.stop)
  let snapshots = 0
  box.uplink.onConnect(() => {
    snapshots += 1
    for (const id of ['201', '202', '203']) box.uplink.publish('endpoint', endpointData(id, 'idle', 'snapshot'), topics.endpoint(GW))
  })
  box.uplink.start()
  await eventually(() => box.uplink.connected && snapshots === 1, 'the first connect')
  await eventually(() => broker.endpointMessages().filter((m) => m.data.cause === 'snapshot').length >= 3, 'the first snapshot')

  proxy.cut()
  await eventually(() => !box.uplink.connected, 'the box to see the cut')
  const bytesBefore = proxy.stats().bytesUp
  const messagesBefore = broker.messages.length
  // 300 transitions on 3 endpoints while cut off: coalesced to the latest per endpoint.
  const states = ['ringing', 'busy', 'held', 'busy', 'idle'] as const
  const writes: Array<Promise<boolean>> = []
  for (let i = 0; i < 300; i++) {
    const id = ['201', '202', '203'][i % 3] as string
    writes.push(box.uplink.publishDurable(outboxKeys.endpoint('pbx1', id), 'endpoint', endpointData(id, states[Math.floor(i / 3) % 5] as 'busy', `step-${i}`), topics.endpoint(GW)))
  }
  // A non-durable publish while cut off is dropped and counted, not queued in mqtt.js.
  box.uplink.publish('directory', { connectorId: 'pbx1', entries: [] }, topics.directory(GW))
  t.same(new Set(await Promise.all(writes)), new Set([true]))
  t.equal(box.outbox.size, 3, 'coalesced to one record per endpoint')
  t.ok(box.counters.get('uplink.dropped_offline') >= 1, 'the non-durable publish was dropped while offline')
  t.equal(proxy.stats().bytesUp, bytesBefore, 'not a byte left the box while cut off')
  t.equal(broker.messages.length, messagesBefore, 'nothing reached the broker')
  const pendingSeqs = box.outbox.pending().map((r) => r.seq)

  proxy.restore()
  await eventually(() => snapshots === 2, 'the reconnect')
  await eventually(() => box.outbox.size === 0, 'the outbox to drain')
  await eventually(() => broker.endpointMessages().filter((m) => m.data.cause === 'snapshot').length >= 6, 'the second snapshot')
  const after = broker.messages.slice(messagesBefore).filter((m) => m.type === 'endpoint')
  const replayed = after.filter((m) => m.data.cause !== 'snapshot')
  t.same(replayed.map((m) => m.seq), pendingSeqs, 'the replay is the outbox, in seq order')
  t.same(replayed.map((m) => m.data.cause), ['step-297', 'step-298', 'step-299'], 'with the latest state of each endpoint')
  const lastReplayIndex = after.findLastIndex((m) => m.data.cause !== 'snapshot')
  const firstSnapshotIndex = after.findIndex((m) => m.data.cause === 'snapshot')
  t.ok(lastReplayIndex < firstSnapshotIndex, 'the snapshot comes after the replay')
  const drained = box.lines().find((l) => /^outbox drained: 3 records in \d+ ms$/.test(l.msg))
  t.ok(drained, 'an info line says the outbox drained')
  const seqs = after.map((m) => m.seq)
  t.same(seqs, [...seqs].sort((a, b) => a - b), 'seq only grows on the wire')
})

t.test('a record replaced while in flight stays until its newer version is acknowledged', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${broker.mqttsPort}`], tls }, join(root, `b${++boxes}`))
  t.teardown(box.stop)
  box.uplink.start()
  await eventually(() => box.uplink.connected, 'the box to connect')
  const key = outboxKeys.endpoint('pbx1', '301')
  const first = box.uplink.publishDurable(key, 'endpoint', endpointData('301', 'ringing'), topics.endpoint(GW))
  const second = box.uplink.publishDurable(key, 'endpoint', endpointData('301', 'busy'), topics.endpoint(GW))
  await Promise.all([first, second])
  await eventually(() => box.outbox.size === 0, 'both acknowledged')
  const seen = broker.endpointMessages().filter((m) => m.data.endpointId === '301')
  t.equal(seen.at(-1)?.data.state, 'busy', 'the broker ends on the latest state')
})

t.test('1,000 transitions over 100 endpoints while cut: final state right, per-endpoint order kept', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${proxy.port}`], tls }, join(root, `b${++boxes}`))
  t.teardown(box.stop)
  box.uplink.start()
  await eventually(() => box.uplink.connected, 'the box to connect')
  const start = broker.messages.length
  proxy.cut()
  await eventually(() => !box.uplink.connected, 'the cut to be seen')
  const latest = new Map<string, string>()
  const states = ['ringing', 'busy', 'held', 'idle'] as const
  for (let i = 0; i < 1000; i++) {
    const id = String(1000 + (i * 7) % 100)
    const state = states[i % 4] as 'busy'
    latest.set(id, `${state}#${i}`)
    void box.uplink.publishDurable(outboxKeys.endpoint('pbx1', id), 'endpoint', endpointData(id, state, `t${i}`), topics.endpoint(GW))
  }
  await box.outbox.flush()
  t.equal(box.outbox.size, 100)
  proxy.restore()
  await eventually(() => box.uplink.connected && box.outbox.size === 0, 'the outbox to drain after the cut')
  const final = new Map<string, { seq: number; label: string }>()
  let outOfOrder = 0
  for (const m of broker.messages.slice(start)) {
    if (m.type !== 'endpoint') continue
    const id = String(m.data.endpointId)
    const previous = final.get(id)
    if (previous && previous.seq > m.seq) outOfOrder += 1
    final.set(id, { seq: m.seq, label: `${String(m.data.state)}#${String(m.data.cause).slice(1)}` })
  }
  t.equal(outOfOrder, 0, 'no endpoint saw an older seq after a newer one')
  t.same(new Map([...final].map(([id, v]) => [id, v.label])), latest, 'every endpoint ends on its last transition')
})

t.test('a silent peer (blackhole): records handed to mqtt.js but never acknowledged stay in the outbox and are replayed', async (t) => {
  const box = await makeBox({ urls: [`mqtts://127.0.0.1:${proxy.port}`], tls, keepaliveS: 1 }, join(root, `b${++boxes}`))
  t.teardown(box.stop)
  let connects = 0
  box.uplink.onConnect(() => (connects += 1))
  box.uplink.start()
  await eventually(() => box.uplink.connected && connects === 1, 'the box to connect')
  proxy.blackhole()
  for (let i = 0; i < 20; i++) {
    void box.uplink.publishDurable(outboxKeys.endpoint('pbx1', `70${i % 10}`), 'endpoint', endpointData(`70${i % 10}`, i < 10 ? 'ringing' : 'busy', `bh-${i}`), topics.endpoint(GW))
  }
  await box.outbox.flush()
  t.equal(box.outbox.size, 10, 'unacknowledged: all ten endpoints still in the outbox')
  await eventually(() => !box.uplink.connected, 'the keepalive to notice the silent peer', 15_000)
  proxy.cut() // the held bytes of the dead connection never arrive
  proxy.restore()
  await eventually(() => connects === 2 && box.outbox.size === 0, 'the reconnect and the replay to drain', 15_000)
  for (let i = 0; i < 10; i++) {
    const last = broker.endpointMessages().filter((m) => m.data.endpointId === `70${i}`).at(-1)
    t.equal(last?.data.cause, `bh-${i + 10}`, `endpoint 70${i} ends on its latest state`)
  }
})
