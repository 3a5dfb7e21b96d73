import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import { closedPort } from '../helpers/free-port.js'
import type { TapTest } from '../helpers/tap-types.js'
import { offlineCount, startAdapter, synchronised, type Harness } from './fixtures/harness.js'

const ALL = ['201', '202', '203']

async function connected(t: TapTest, options: Parameters<typeof startAdapter>[1] = {}): Promise<Harness> {
  const harness = await startAdapter(t, options)
  await synchronised(harness, ALL)
  return harness
}

/** The link still carries events: a DND change at the phone arrives as an observation. */
async function stillWorks(harness: Harness, extension = '201'): Promise<void> {
  const from = harness.observations.mark()
  const on = !harness.sim.getDnd(extension)
  harness.sim.setDndAtPhone(extension, on)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === extension && o.dnd === on, { from, what: 'an event after the bad input' })
}

async function offlineReason(harness: Harness, from = 0): Promise<string> {
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from, what: 'offline', timeoutMs: 8000 })
  return offline.kind === 'link' ? offline.reason ?? '' : ''
}

t.test('a wrong App password: the simulator refuses the digest, the adapter says what to check and retries', async (t) => {
  const harness = await startAdapter(t, { config: { appPassword: 'wrong' } })
  const reason = await offlineReason(harness)
  t.match(reason, /refused the login of App object "gateway".*check the App object's Name and Password/)
  t.match(harness.logs.withMessage('PBX link failed'), [{ level: 50, code: 'LOGIN_REFUSED' }], 'an error line with the code')
  t.equal(harness.sim.stats.loginsAccepted, 0)
  t.ok(harness.sim.stats.loginsRefused >= 1, 'the simulator checked the digest and refused it')
  t.notOk(harness.observations.items.some((o) => o.kind === 'link' && o.state === 'connected'), 'never connected')
  // Backoff retries (first after 0.5-1 s): the same state is reported once, not once per attempt.
  await eventually(() => harness.sim.stats.loginsRefused >= 2, 'a retry', 5000)
  t.pass('retried')
  t.equal(offlineCount(harness), 1, 'one offline report for repeated identical failures')
})

t.test('a wrong App name is refused the same way', async (t) => {
  const harness = await startAdapter(t, { config: { appName: 'other' } })
  t.match(await offlineReason(harness), /refused the login of App object "other"/)
})

for (const [api, tick] of [['RCC', 'RCC'], ['PbxTableUsers', 'TableUsers'], ['PbxApi', 'PbxApi']] as const) {
  t.test(`the ${api} API not enabled on the App object: the PBX stays silent, the adapter names the tick to set`, async (t) => {
    const apis = (['RCC', 'PbxTableUsers', 'PbxApi'] as const).filter((candidate) => candidate !== api)
    const harness = await startAdapter(t, { sim: { apis: [...apis] }, config: { requestTimeoutMs: 300 } })
    const reason = await offlineReason(harness)
    t.match(reason, new RegExp(`is the ${api} API enabled for App object "gateway" \\(tick "${tick}"`), reason)
    t.match(harness.logs.withMessage('PBX link unusable; closing it and retrying with backoff'), [{ level: 50 }])
    t.ok(harness.sim.stats.ignoredDisabledApi >= 1, 'the simulator ignored the request')
  })
}

t.test('malformed JSON, a non-object, a binary frame: logged, counted, dropped; the link stays', async (t) => {
  const harness = await connected(t)
  harness.sim.sendRaw('{"mt":"CallInfo", "call": ')
  harness.sim.sendRaw('[1,2,3]')
  harness.sim.sendRaw('{"api":"RCC"}')
  harness.sim.sendRaw(Buffer.from([0, 1, 2, 3]), true)
  await stillWorks(harness)
  const lines = harness.logs.withMessage('malformed frame from the PBX dropped; the link stays up (if this repeats, check that the address is the PBX App Platform WebSocket)')
  t.match(lines.map((line) => line.code), ['NOT_JSON', 'NOT_AN_OBJECT', 'NO_MT', 'BINARY_FRAME'])
  t.equal(harness.counters.get('innovaphone.frames.malformed'), 4)
  t.equal(offlineCount(harness), 0, 'no reconnect needed')
})

t.test('known messages with wrong fields are dropped with the field named', async (t) => {
  const harness = await connected(t)
  harness.sim.sendRaw(JSON.stringify({ api: 'RCC', mt: 'CallInfo', src: 'm1', state: 'ringing' }))
  harness.sim.sendRaw(JSON.stringify({ api: 'PbxApi', mt: 'PresenceUpdate', src: 'm1', presence: 'dnd' }))
  harness.sim.sendRaw(JSON.stringify({ api: 'PbxTableUsers', mt: 'ReplicateAdd', columns: { cn: 'No Guid' } }))
  await stillWorks(harness)
  const lines = harness.logs.withMessage('PBX message with missing or wrong fields dropped')
  t.match(lines, [{ mt: 'CallInfo', reason: /call/ }, { mt: 'PresenceUpdate', reason: /presence/ }, { mt: 'ReplicateAdd', reason: /guid/ }])
  t.equal(harness.counters.get('innovaphone.messages.malformed'), 3)
  t.equal(offlineCount(harness), 0)
})

t.test('unknown mt values: one warning per type, every one counted', async (t) => {
  const harness = await connected(t)
  for (let i = 0; i < 3; i++) harness.sim.sendRaw(JSON.stringify({ api: 'RCC', mt: 'CallAdd', call: i }))
  harness.sim.sendRaw(JSON.stringify({ mt: 'SomethingNew' }))
  harness.sim.sendRaw(JSON.stringify({ mt: 'LostResult', src: 'q999' }))
  await stillWorks(harness)
  const lines = harness.logs.withMessage('unknown message type from the PBX ignored (newer PBX firmware?); further ones of this type are counted only')
  t.match(lines, [{ level: 40, mt: 'CallAdd', api: 'RCC' }, { level: 40, mt: 'SomethingNew' }])
  t.equal(harness.counters.get('innovaphone.messages.unknown'), 4)
  t.equal(harness.counters.get('innovaphone.responses.unmatched'), 1, 'a result nobody waits for is counted separately')
  t.equal(offlineCount(harness), 0)
})

t.test('a PBX that stops answering (connection open, nothing comes back): detected, said in words, reconnected', async (t) => {
  const harness = await connected(t, { config: { keepAliveIntervalS: 0.3, answerTimeoutMs: 400 } })
  const from = harness.observations.mark()
  harness.sim.freeze(true)
  const reason = await offlineReason(harness, from)
  t.match(reason, /the PBX stopped answering: no frame and no pong within 400 ms of a KeepAlive, although the connection is open/)
  t.match(harness.logs.withMessage('PBX link lost'), [{ code: 'PEER_SILENT' }])
  t.equal(harness.counters.get('innovaphone.link.silent'), 1)
  t.ok(harness.sim.stats.ignoredWhileFrozen >= 1, 'the adapter probed and the frozen PBX ignored it')
  harness.sim.freeze(false)
  await synchronised(harness, ALL, from)
  await stillWorks(harness)
})

t.test('KeepAlive keeps an idle link up while the PBX answers pings', async (t) => {
  const harness = await connected(t, { config: { keepAliveIntervalS: 0.1, answerTimeoutMs: 300 } })
  // Each probe needs an answer within 300 ms; several in a row without traffic in between.
  await eventually(() => harness.sim.stats.keepAlives >= 5, 'five KeepAlives')
  t.pass('KeepAlives sent on an idle link')
  t.equal(offlineCount(harness), 0, 'no false alarm')
})

t.test('a wrong path: HTTP 404 on the upgrade, the adapter names the right path', async (t) => {
  const harness = await startAdapter(t, { config: { path: '/PBX0/APPCLIENT/websocket' } })
  t.match(await offlineReason(harness), /answered HTTP 404: wrong path\? The App Platform WebSocket is \/PBX0\/APPS\/websocket/)
})

t.test('nothing listening: connection refused, in words', async (t) => {
  const harness = await startAdapter(t, { config: { port: await closedPort() } })
  t.match(await offlineReason(harness), /connection refused by ws:\/\/127\.0\.0\.1:\d+\/PBX0\/APPS\/websocket: check the host and port/)
})
