import t from 'tap'
import { encodeXmlFrame } from '../../gateway/src/adapters/osbiz/csta/xml-framing.js'
import type { TapTest } from '../helpers/tap-types.js'
import { startAdapter, synchronised, USERS, type AdapterHarness } from './fixtures/adapter-harness.js'

const ALL = USERS.map((user) => user.extension)
const DROPPED = 'malformed CSTA frame dropped'

/** A well-framed event whose body is whatever the test says. */
const eventFrame = (xml: string): Buffer => encodeXmlFrame(9999, Buffer.from(xml, 'utf8'))

async function connected(t: TapTest): Promise<AdapterHarness> {
  const harness = await startAdapter(t)
  await synchronised(harness, ALL)
  return harness
}

/** The link still carries events: a DND change at the phone arrives as an observation. */
async function stillWorks(harness: AdapterHarness, extension = '201'): Promise<void> {
  const from = harness.observations.mark()
  const on = !harness.sim.getDnd(extension)
  harness.sim.setDndAtPhone(extension, on)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === extension && o.dnd === on, { from, what: 'an event after the bad input' })
}

function offlineCount(harness: AdapterHarness): number {
  return harness.observations.items.filter((o) => o.kind === 'link' && o.state === 'offline').length
}

t.test('a frame that is not XML is logged, counted and skipped; the link stays', async (t) => {
  const harness = await connected(t)
  harness.sim.sendRaw(eventFrame('this is not XML at all'))
  await stillWorks(harness)
  t.match(harness.logs.withMessage(DROPPED), [{ level: 40, code: 'XML_PARSE', invokeId: 9999, inSync: true, component: 'csta-driver' }], 'one warning line with the details in fields')
  t.equal(harness.counters.get('osbiz.messages.malformed'), 1)
  t.equal(offlineCount(harness), 0, 'no reconnect needed')
})

t.test('unknown elements and events missing fields are logged and counted, never fatal', async (t) => {
  const harness = await connected(t)
  harness.sim.sendRaw(eventFrame('<ForwardingEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed3"><device>201</device></ForwardingEvent>'))
  harness.sim.sendRaw(eventFrame('<DeliveredEvent><monitorCrossRefID>1</monitorCrossRefID></DeliveredEvent>'))
  harness.sim.sendRaw(eventFrame('<DoNotDisturbEvent><monitorCrossRefID>999</monitorCrossRefID><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>'))
  await stillWorks(harness)
  t.match(harness.logs.withMessage('unknown CSTA message ignored'), [{ level: 40, element: 'ForwardingEvent', invokeId: 9999 }])
  t.equal(harness.counters.get('osbiz.messages.unknown'), 1)
  t.match(harness.logs.withMessage(DROPPED), [{ code: 'MESSAGE_FIELDS', element: 'DeliveredEvent', reason: /missing connection/ }])
  t.equal(harness.counters.get('osbiz.messages.malformed'), 1)
  t.equal(harness.counters.get('osbiz.events.unmatched'), 1, 'an event for a monitor we never started')
  t.equal(offlineCount(harness), 0)
})

t.test('a bad invoke id drops one frame; the stream stays in sync', async (t) => {
  const harness = await connected(t)
  const frame = eventFrame('<DoNotDisturbEvent><monitorCrossRefID>1</monitorCrossRefID><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>')
  frame.write('99x9', 4, 'ascii')
  harness.sim.sendRaw(frame)
  await stillWorks(harness, '202')
  t.match(harness.logs.withMessage(DROPPED), [{ code: 'FRAME_INVOKE_ID', inSync: true }])
  t.equal(harness.counters.get('osbiz.frames.malformed'), 1)
  t.notOk(harness.observations.items.some((o) => o.kind === 'dnd' && o.endpointId === '201'), 'the dropped frame had no effect')
  t.equal(offlineCount(harness), 0)
})

t.test('a length below the header size desynchronises the stream: close, reconnect, re-read', async (t) => {
  const harness = await connected(t)
  const from = harness.observations.mark()
  harness.sim.sendRaw(Buffer.from([0x00, 0x00, 0x00, 0x04, 0x39, 0x39, 0x39, 0x39]))
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from })
  t.match(offline, { reason: /CSTA stream out of sync \(FRAME_LENGTH/ })
  t.match(harness.logs.withMessage(DROPPED), [{ code: 'FRAME_LENGTH', inSync: false }])
  t.equal(harness.counters.get('osbiz.frames.malformed'), 1)
  await synchronised(harness, ALL, from)
  await stillWorks(harness)
  t.equal(harness.sim.stats.sessionsStarted, 2, 'a new session')
})

t.test('a 70 KB message from a sender whose 16-bit length wrapped: dropped, resynchronised', async (t) => {
  const harness = await connected(t)
  const from = harness.observations.mark()
  const body = Buffer.from(`<SystemStatus><systemStatus>${'x'.repeat(70 * 1024)}</systemStatus></SystemStatus>`)
  const header = Buffer.alloc(8)
  header.writeUInt16BE((body.length + 8) & 0xffff, 2)
  header.write('9000', 4, 'ascii')
  harness.sim.sendRaw(Buffer.concat([header, body]))
  await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from })
  t.match(harness.logs.withMessage(DROPPED), [{ code: 'XML_PARSE', inSync: true }, { code: 'FRAME_HEADER', inSync: false }])
  t.equal(harness.counters.get('osbiz.frames.malformed'), 1)
  t.equal(harness.counters.get('osbiz.messages.malformed'), 1)
  await synchronised(harness, ALL, from)
  await stillWorks(harness)
})

t.test('garbage without any framing is one clear line, then a fresh link', async (t) => {
  const harness = await connected(t)
  const from = harness.observations.mark()
  harness.sim.sendRaw(Buffer.from('<html><body>502 Bad Gateway</body></html>'))
  await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from })
  const lines = harness.logs.withMessage(DROPPED)
  t.equal(lines.length, 1, 'one line, not one per byte')
  t.match(lines[0], { code: 'FRAME_HEADER', reason: /0x3c68/ })
  await synchronised(harness, ALL, from)
  t.pass('reconnected')
})
