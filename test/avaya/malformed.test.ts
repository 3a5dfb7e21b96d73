import t from 'tap'
import { encodeFrame, FRAME_PREFIX } from '../../gateway/src/adapters/avaya-ipo/mtcti3/codec.js'
import type { TapTest } from '../helpers/tap-types.js'
import { startAvaya, synchronised, USERS, type AvayaHarness } from './fixtures/harness.js'

const ALL = USERS.map((user) => user.extension)
const DROPPED = 'malformed MTCTI-3 frame dropped'

async function connected(t: TapTest): Promise<AvayaHarness> {
  const harness = await startAvaya(t)
  await synchronised(harness, ALL)
  return harness
}

/** The link still carries events: a DND change at the phone arrives as an observation. */
async function stillWorks(harness: AvayaHarness, extension = '201'): Promise<void> {
  const from = harness.observations.mark()
  const on = !harness.sim.getDnd(extension)
  harness.sim.setDndAtPhone(extension, on)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === extension && o.dnd === on, { from, what: 'an event after the bad input' })
}

function offlineCount(harness: AvayaHarness): number {
  return harness.observations.items.filter((o) => o.kind === 'link' && o.state === 'offline').length
}

t.test('a wrong prefix is logged with the prefix, counted and dropped; the link stays', async (t) => {
  const harness = await connected(t)
  const frame = encodeFrame({ notify: { subscribe_id: 1000, notify_id: 99, user: { extn: '201', dnd: true } } })
  frame.writeUInt32BE(2, 0)
  harness.sim.sendRaw(frame)
  await stillWorks(harness, '202')
  t.match(harness.logs.withMessage(DROPPED), [{ level: 40, code: 'FRAME_PREFIX', prefix: '00000002', component: 'mtcti3-driver' }])
  t.equal(harness.counters.get('avaya-ipo.frames.malformed'), 1)
  t.notOk(harness.observations.items.some((o) => o.kind === 'dnd' && o.endpointId === '201'), 'the dropped frame had no effect')
  t.equal(offlineCount(harness), 0)
})

t.test('a truncated protobuf is one warning and a counter', async (t) => {
  const harness = await connected(t)
  const frame = encodeFrame({ notify: { subscribe_id: 1000, notify_id: 99, user: { extn: '201', name: 'Alice', email: 'alice@contoso.example', dnd: true } } })
  harness.sim.sendRaw(frame.subarray(0, frame.length - 5))
  await stillWorks(harness)
  t.match(harness.logs.withMessage(DROPPED), [{ level: 40, code: 'PROTOBUF_DECODE', reason: /index out of range|invalid/ }])
  t.equal(harness.counters.get('avaya-ipo.messages.malformed'), 1)
  t.equal(offlineCount(harness), 0)
})

t.test('an unknown oneof case, in the envelope or in a Notify, is logged with what was there', async (t) => {
  const harness = await connected(t)
  // Field 20 of Message (a length-delimited payload we do not know).
  harness.sim.sendRaw(Buffer.concat([FRAME_PREFIX, Buffer.from([0xa2, 0x01, 0x02, 0x08, 0x01])]))
  // A Notify on a live subscription with payload field 10 (presence), which our schema leaves out.
  const notify = Buffer.from([0x08, 0xe8, 0x07, 0x10, 0x63, 0x52, 0x02, 0x08, 0x01])
  harness.sim.sendRaw(Buffer.concat([FRAME_PREFIX, Buffer.from([0x42, notify.length]), notify]))
  await stillWorks(harness)
  t.match(harness.logs.withMessage(DROPPED), [{ code: 'UNKNOWN_PAYLOAD', fields: [20], reason: /fields 20/ }])
  t.match(harness.logs.withMessage('Notify with an unknown payload ignored'), [{ level: 40, subscribeId: 1000, notifyId: 99 }])
  t.equal(harness.counters.get('avaya-ipo.messages.unknown'), 2)
  t.equal(offlineCount(harness), 0)
})

t.test('frames of 4 bytes or fewer, and text frames, are dropped with a line each', async (t) => {
  const harness = await connected(t)
  harness.sim.sendRaw(Buffer.from([0, 0, 0, 1]))
  harness.sim.sendRaw(Buffer.from([0, 0]))
  harness.sim.sendRaw(Buffer.alloc(0))
  harness.sim.sendRaw(Buffer.from('{"mt":"hello"}'), { binary: false })
  await stillWorks(harness)
  t.match(harness.logs.withMessage(DROPPED), [
    { code: 'FRAME_TOO_SHORT', bytes: 4, reason: /4 bytes/ },
    { code: 'FRAME_TOO_SHORT', bytes: 2 },
    { code: 'FRAME_TOO_SHORT', bytes: 0 },
    { code: 'TEXT_FRAME', reason: /binary frames only/ },
  ])
  t.equal(harness.counters.get('avaya-ipo.frames.malformed'), 4)
  t.equal(offlineCount(harness), 0)
})

t.test('a 1 MB frame closes the link with a reason that says what to change; it reconnects and re-reads', async (t) => {
  const harness = await connected(t)
  const from = harness.observations.mark()
  harness.sim.sendRaw(Buffer.concat([FRAME_PREFIX, Buffer.alloc(1024 * 1024, 0x41)]))
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from })
  t.match(offline, { reason: /larger than maxFrameBytes \(524288 bytes\); raise maxFrameBytes/ })
  t.equal(harness.counters.get('avaya-ipo.frames.oversized'), 1)
  await synchronised(harness, ALL, from)
  await stillWorks(harness)
  t.equal(harness.sim.stats.upgrades, 2, 'a new connection')
})

t.test('a frame within maxFrameBytes but of garbage is dropped without closing', async (t) => {
  const harness = await connected(t)
  harness.sim.sendRaw(Buffer.concat([FRAME_PREFIX, Buffer.alloc(200 * 1024, 0xff)]))
  await stillWorks(harness)
  t.match(harness.logs.withMessage(DROPPED), [{ code: 'PROTOBUF_DECODE', bytes: 200 * 1024 + 4 }])
  t.equal(offlineCount(harness), 0)
})

t.test('wrong credentials: HTTP 401 becomes an offline reason naming the service user; retried slowly', async (t) => {
  const harness = await startAvaya(t, { config: { password: 'wrong' } })
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(offline, { reason: /refused the service user "gwservice" \(HTTP 401\): check its user name and password/ })
  t.match(harness.logs.withMessage('PBX link failed'), [{ code: 'AUTH_REJECTED' }])
  t.match(harness.logs.withMessage('reconnecting to the PBX'), [{ delayMs: 60000 }], 'waits a minute before trying again')
  t.equal(harness.sim.stats.authFailures, 1)
  t.equal(harness.sim.stats.upgrades, 0)
})

t.test('a server that does not agree on the "openapi" subprotocol is named as such', async (t) => {
  const harness = await startAvaya(t, { sim: { subprotocolAnswer: null } })
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(offline, { reason: /did not accept the WebSocket subprotocol "openapi".*Server sent no subprotocol/ })
  t.match(harness.logs.withMessage('PBX link failed'), [{ code: 'SUBPROTOCOL' }])
})

t.test('a server answering another subprotocol is refused too', async (t) => {
  const harness = await startAvaya(t, { sim: { subprotocolAnswer: 'other' } })
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(offline, { reason: /subprotocol "openapi".*invalid subprotocol/ })
})

t.test('a wrong path (HTTP 404) says to check MTCTI-3 and the path', async (t) => {
  const harness = await startAvaya(t, { config: { path: '/wrong' } })
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(offline, { reason: /HTTP 404 for \/wrong: is this an IP Office/ })
})
