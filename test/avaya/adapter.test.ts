import t from 'tap'
import { AdapterError } from '../../gateway/src/adapters/types.js'
import { CALL_STATE_NAMES, CallState } from '../../gateway/src/adapters/avaya-ipo/mtcti3/model.js'
import { CALL_STATE_MAPPING } from '../../gateway/src/adapters/avaya-ipo/normalise.js'
import { eventually } from '../helpers/eventually.js'
import { startAvaya, synchronised, USERS } from './fixtures/harness.js'

const ALL = USERS.map((user) => user.extension)

t.test('directory comes from the PBX with full names and e-mails; every Notify is acknowledged', async (t) => {
  const harness = await startAvaya(t)
  await synchronised(harness, ALL)
  const directory = await harness.observations.waitFor((o) => o.kind === 'directory')
  t.same(directory.kind === 'directory' && directory.entries, [
    { endpointId: '201', name: 'Alice Adams', email: 'alice@contoso.example' },
    { endpointId: '202', name: 'Bob Baker', email: 'bob@contoso.example' },
    { endpointId: '203', name: 'Carol' },
  ])
  // 1 lines Notify + 2 per user (NotifyUser, initial call control).
  await eventually(() => harness.sim.stats.acks === 1 + 2 * USERS.length, 'every Notify acknowledged')
  t.equal(harness.sim.subscriptionCount('user'), 3)
  t.equal(harness.sim.subscriptionCount('lines'), 1)
})

t.test('users added, changed and removed in IP Office follow into the directory and subscriptions', async (t) => {
  const harness = await startAvaya(t)
  await synchronised(harness, ALL)
  let from = harness.observations.mark()
  harness.sim.addUser({ extension: '204', name: 'Dave', email: 'dave@contoso.example' })
  await harness.observations.waitFor((o) => o.kind === 'snapshot' && o.endpointId === '204', { from })
  const added = await harness.observations.waitFor((o) => o.kind === 'directory' && o.entries.some((e) => e.endpointId === '204'), { from })
  t.match(added, { entries: [{}, {}, {}, { endpointId: '204', email: 'dave@contoso.example' }] })
  from = harness.observations.mark()
  harness.sim.setEmail('203', 'carol@contoso.example')
  await harness.observations.waitFor((o) => o.kind === 'directory' && o.entries.some((e) => e.endpointId === '203' && e.email === 'carol@contoso.example'), { from, what: 'e-mail change' })
  from = harness.observations.mark()
  const callId = harness.sim.incomingCall('204')
  await harness.observations.waitFor((o) => o.kind === 'call' && o.endpointId === '204' && o.state === 'alerting', { from })
  harness.sim.removeUser('204')
  await harness.observations.waitFor((o) => o.kind === 'call' && o.endpointId === '204' && o.callId === callId && o.state === 'cleared', { from, what: 'call of the deleted user ends' })
  const removed = await harness.observations.waitFor((o) => o.kind === 'directory' && !o.entries.some((e) => e.endpointId === '204'), { from })
  t.equal(removed.kind === 'directory' && removed.entries.length, 3)
  await eventually(() => harness.sim.subscriptionCount('user') === 3, 'the deleted user has no subscription')
})

t.test('every CallInfo state, known and unknown, arrives through the adapter as the table says', async (t) => {
  const harness = await startAvaya(t)
  await synchronised(harness, ALL)
  const states = [...CALL_STATE_NAMES.keys(), 24, 99]
  let callNumber = 500
  for (const state of states) {
    const callId = String(callNumber++)
    // Bring the leg to CONNECTED first, so "cleared" has a live call to clear and "ignore" a state to keep.
    const from = harness.observations.mark()
    harness.sim.setCallState(callId, '201', CallState.CONNECTED)
    await harness.observations.waitFor((o) => o.kind === 'call' && o.callId === callId && o.state === 'connected', { from })
    const mark = harness.observations.mark()
    harness.sim.setCallState(callId, '201', state)
    const expected = CALL_STATE_MAPPING[state] ?? 'ignore'
    const name = CALL_STATE_NAMES.get(state) ?? `unknown ${state}`
    if (expected === 'ignore' || expected === 'connected') {
      // Nothing changes: prove it with a barrier on another endpoint.
      const on = !harness.sim.getDnd('202')
      harness.sim.setDndAtPhone('202', on)
      await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '202' && o.dnd === on, { from: mark })
      t.notOk(harness.observations.since(mark).some((o) => o.kind === 'call' && o.callId === callId), `${name}: no change reported`)
    } else {
      const seen = await harness.observations.waitFor((o) => o.kind === 'call' && o.callId === callId, { from: mark, what: name })
      t.match(seen, { endpointId: '201', state: expected }, `${name} → ${expected}`)
    }
    if (harness.sim.calls().some((call) => call.callId === callId)) harness.sim.hangup(callId)
  }
  t.ok(harness.counters.get('avaya-ipo.calls.ignored') >= 4, 'ignored states are counted')
})

t.test('setDnd with the option off rejects and says how to enable it', async (t) => {
  const harness = await startAvaya(t, { config: { experimentalSetDnd: false } })
  await synchronised(harness, ALL)
  const error = await harness.adapter.setDnd('201', true).then(() => undefined, (caught: unknown) => caught)
  t.ok(error instanceof AdapterError)
  t.match(error, { code: 'AVAYA_IPO_SETDND_DISABLED', message: /experimental.*"experimentalSetDnd": true/ })
  t.equal(harness.sim.stats.sacUpdates, 0, 'nothing sent to the PBX')
})

t.test('setDnd that the PBX accepts but never confirms fails with a clear result', async (t) => {
  const harness = await startAvaya(t, { config: { dndConfirmTimeoutMs: 300 }, sim: { sacTogglesDnd: false } })
  await synchronised(harness, ALL)
  const error = await harness.adapter.setDnd('203', true).then(() => undefined, (caught: unknown) => caught)
  t.ok(error instanceof AdapterError)
  t.match(error, { code: 'AVAYA_IPO_DND_UNCONFIRMED', message: /accepted the Send All Calls update for 203 but did not report DND on within 300 ms.*experimental/ })
  t.equal(harness.sim.stats.sacUpdates, 1, 'the update was sent once')
  t.equal(harness.counters.get('avaya-ipo.dnd.unconfirmed'), 1)
  t.same(await harness.adapter.setDnd('203', false), { dnd: false }, 'setting the value it already has still resolves')
})

t.test('setDnd before the endpoint is monitored, and unknown endpoints, are refused by code', async (t) => {
  const harness = await startAvaya(t)
  await synchronised(harness, ALL)
  await t.rejects(harness.adapter.setDnd('999', true), { code: 'AVAYA_IPO_UNKNOWN_DEVICE' })
  harness.sim.terminateSubscriptions('user', 'test')
  // Depending on which arrives first, the adapter knows the subscription is gone or the PBX refuses the update.
  await t.rejects(harness.adapter.setDnd('201', true), { code: /^AVAYA_IPO_(NOT_SUBSCRIBED|REFUSED)$/, message: /not monitored yet|refused the Send All Calls update for 201/ }, 'while the user is being subscribed again')
})

t.test('subscriptions are renewed before their timeout and survive it', async (t) => {
  const harness = await startAvaya(t, { config: { subscriptionTimeoutS: 2 } })
  await synchronised(harness, ALL)
  const mark = harness.observations.mark()
  await eventually(() => harness.sim.stats.renewals >= 8, 'two rounds of renewals (4 subscriptions)', 5000)
  t.equal(harness.sim.stats.terminations, 0, 'nothing expired')
  t.equal(harness.counters.get('avaya-ipo.subscriptions.renewed') >= 8, true)
  t.notOk(harness.observations.since(mark).some((o) => o.kind === 'snapshot'), 'no resubscription was needed')
})

t.test('after SubscribeTerminated the adapter subscribes again and re-reads the state', async (t) => {
  const harness = await startAvaya(t)
  await synchronised(harness, ALL)
  const callId = harness.sim.incomingCall('202')
  harness.sim.answer(callId)
  await harness.observations.waitFor((o) => o.kind === 'call' && o.callId === callId && o.state === 'connected')
  const from = harness.observations.mark()
  t.equal(harness.sim.terminateSubscriptions('all', 'configuration merged'), 4)
  for (const extension of ALL) await harness.observations.waitFor((o) => o.kind === 'snapshot' && o.endpointId === extension, { from })
  const snapshot = harness.observations.since(from).find((o) => o.kind === 'snapshot' && o.endpointId === '202')
  t.match(snapshot, { calls: [{ callId, state: 'connected' }] }, 'the call is in the new snapshot')
  await eventually(() => harness.sim.subscriptionCount() === 4, 'all four subscriptions back')
  t.equal(harness.counters.get('avaya-ipo.subscriptions.terminated'), 4)
  t.match(harness.logs.withMessage('IP Office ended a user subscription: subscribing again'), [{ reason: 'configuration merged' }, {}, {}])
})

t.test('TLS: an untrusted certificate is refused with its fingerprint in the reason; the pin accepts it', async (t) => {
  const untrusted = await startAvaya(t, { config: { tls: {} } })
  const offline = await untrusted.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(offline, { reason: new RegExp(`not trusted .*tls.pinnedSha256 to ${untrusted.tls.fingerprint256}`) })
  t.equal(untrusted.sim.stats.authFailures + untrusted.sim.stats.upgrades, 0, 'no credentials reached the server')

  const pinned = await startAvaya(t, { config: { tls: { pinnedSha256: untrusted.tls.fingerprint256.toUpperCase().match(/../g)?.join(':') } } })
  await synchronised(pinned, ALL)
  t.pass('pinned certificate accepted')

  const wrongPin = await startAvaya(t, { config: { tls: { pinnedSha256: 'ab'.repeat(32) } } })
  const mismatch = await wrongPin.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(mismatch, { reason: /not the pinned one/ })
  t.equal(wrongPin.sim.stats.upgrades + wrongPin.sim.stats.authFailures, 0, 'nothing sent before the pin check')
})

t.test('the simulator enforces the upgrade: path, credentials, subprotocol, link limit', async (t) => {
  const harness = await startAvaya(t, { start: false, sim: { maxLinks: 1 } })
  const { default: WebSocket } = await import('ws')
  const tryUpgrade = (options: { path?: string; auth?: string; protocol?: string | undefined }): Promise<number> => new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${harness.sim.port}${options.path ?? '/tpkt/openapi'}`, options.protocol === undefined ? [] : [options.protocol], {
      ca: harness.tls.caPem,
      headers: options.auth === undefined ? {} : { Authorization: options.auth },
    })
    ws.on('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0)
      ws.terminate()
    })
    ws.on('open', () => resolve(101))
    ws.on('error', () => undefined)
  })
  const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  t.equal(await tryUpgrade({ auth: basic('gwservice', 'nope'), protocol: 'openapi' }), 401, 'bad password: 401')
  t.equal(await tryUpgrade({ protocol: 'openapi' }), 401, 'no credentials: 401')
  t.equal(await tryUpgrade({ auth: basic('gwservice', 's3cret') }), 400, 'no subprotocol: 400')
  t.equal(await tryUpgrade({ auth: basic('gwservice', 's3cret'), protocol: 'openapi', path: '/api' }), 404, 'other path: 404')
  t.equal(await tryUpgrade({ auth: basic('gwservice', 's3cret'), protocol: 'openapi' }), 101, 'right: upgraded')
  t.equal(await tryUpgrade({ auth: basic('gwservice', 's3cret'), protocol: 'openapi' }), 503, 'over the link limit: 503')
  t.same(harness.sim.stats.authFailures, 2)
})
