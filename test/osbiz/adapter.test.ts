import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { OsbizAdapter } from '../../gateway/src/adapters/osbiz/adapter.js'
import { osbizAdapterDefinition } from '../../gateway/src/adapters/osbiz/index.js'
import { parseOsbizConfig } from '../../gateway/src/adapters/osbiz/config.js'
import type { SimulatorEventRecord } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { AdapterError, type PbxObservation } from '../../gateway/src/adapters/types.js'
import { closedPort } from '../helpers/free-port.js'
import { captureLogs } from './fixtures/logs.js'
import { Recorder } from '../helpers/recorder.js'
import { eventually } from '../helpers/eventually.js'
import { osbizConfig, startAdapter, synchronised, USERS, type AdapterHarness } from './fixtures/adapter-harness.js'

const ALL = USERS.map((user) => user.extension)

function calls(harness: AdapterHarness, endpointId: string, from: number): string[] {
  return harness.observations.since(from).flatMap((o) => (o.kind === 'call' && o.endpointId === endpointId ? [`${o.callId}:${o.state}`] : []))
}

function dnds(harness: AdapterHarness, endpointId: string, from: number): Array<{ dnd: boolean; byCommand: boolean }> {
  return harness.observations.since(from).flatMap((o) => (o.kind === 'dnd' && o.endpointId === endpointId ? [{ dnd: o.dnd, byCommand: o.byCommand }] : []))
}

/** Events of one PBX arrive in order: once this DND change on 203 is observed, everything before it is too. */
async function barrier(harness: AdapterHarness, from: number): Promise<void> {
  const on = !harness.sim.getDnd('203')
  harness.sim.setDndAtPhone('203', on)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '203' && o.dnd === on, { from, what: 'barrier' })
}

t.test('config: defaults, and every problem listed', async (t) => {
  const parsed = parseOsbizConfig({ id: 'pbx', type: 'osbiz', host: '10.0.0.5', applicationId: 'gw', users: [] })
  t.match(parsed, { ok: true, config: { port: 8800, codec: 'xml', sessionDurationS: 180, monitorsPerSecond: 20, requestTimeoutMs: 5000, probeIntervalS: 30 } })
  const bad = parseOsbizConfig({ id: 'pbx', type: 'osbiz', host: '', codec: 'ber', applicationId: 'gw', users: [{ extension: 'x', name: 'A' }] })
  t.ok(!bad.ok && bad.errors.length >= 3, `several errors: ${bad.ok ? '' : bad.errors.join(' | ')}`)
  const duplicate = parseOsbizConfig({ id: 'pbx', type: 'osbiz', host: 'h', applicationId: 'gw', users: [{ extension: '201', name: 'A' }, { extension: '201', name: 'B' }] })
  t.match(duplicate, { ok: false, errors: [/duplicate extension 201/] })
  t.equal(osbizAdapterDefinition.type, 'osbiz')
  t.ok(osbizAdapterDefinition.create(osbizConfig({ port: 1 }), { logger: captureLogs().logger, clock: systemClock, counters: new Counters() }) instanceof OsbizAdapter)
})

t.test('connects, then publishes the directory and a snapshot per endpoint, monitoring each once', async (t) => {
  const harness = await startAdapter(t, { sim: { credentials: { applicationId: 'gateway' } } })
  await synchronised(harness, ALL)
  const directory = harness.observations.items.find((o) => o.kind === 'directory')
  t.same(directory, {
    kind: 'directory',
    entries: [
      { endpointId: '201', name: 'Alice', email: 'alice@contoso.example' },
      { endpointId: '202', name: 'Bob', email: 'bob@contoso.example' },
      { endpointId: '203', name: 'Carol' },
    ],
  })
  t.equal(harness.sim.monitorCount, 3)
  t.equal(harness.sim.connectionCount, 1)
  await harness.adapter.start()
  t.equal(harness.sim.connectionCount, 1, 'start is idempotent')
})

t.test('an internal call: dialing/alerting, connected, held on one side only, cleared on both', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ALL)
  const { sim, observations } = harness
  const from = observations.mark()
  const callId = sim.outgoingCall('201', '202')
  await observations.waitFor((o) => o.kind === 'call' && o.endpointId === '202' && o.state === 'alerting', { from })
  sim.answer(callId)
  sim.hold(callId, '201')
  sim.retrieve(callId, '201')
  sim.hangup(callId, '202')
  await observations.waitFor((o) => o.kind === 'call' && o.endpointId === '201' && o.state === 'cleared', { from })
  await observations.waitFor((o) => o.kind === 'call' && o.endpointId === '202' && o.state === 'cleared', { from })
  t.same(calls(harness, '201', from), [
    `${callId}:dialing`, `${callId}:dialing`, `${callId}:dialing`, // ServiceInitiated, Originated, Delivered (ringback)
    `${callId}:connected`, `${callId}:held`, `${callId}:connected`,
    `${callId}:connected`, // 202 hangs up first: 201's own connection is still there
    `${callId}:cleared`,
  ], 'caller 201')
  t.same(calls(harness, '202', from), [
    `${callId}:alerting`, `${callId}:connected`,
    `${callId}:connected`, `${callId}:connected`, // 201 holds and retrieves: 202 stays connected
    `${callId}:cleared`,
  ], 'callee 202')
  t.same(calls(harness, '203', from), [], '203 is not involved')
})

t.test('DND: the person, our command, the event after our command, and the current value', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ALL)
  const { sim, adapter } = harness
  const sent = new Recorder<SimulatorEventRecord>()
  sim.onEventSent(sent.push)

  let from = harness.observations.mark()
  sim.setDndAtPhone('201', true)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '201', { from })
  t.same(dnds(harness, '201', from), [{ dnd: true, byCommand: false }], 'pressed at the phone: the person')

  from = harness.observations.mark()
  let sentFrom = sent.mark()
  t.same(await adapter.setDnd('202', true), { dnd: true })
  await sent.waitFor((r) => r.type === 'DoNotDisturbEvent' && r.extension === '202', { from: sentFrom, what: 'the PBX event' })
  await barrier(harness, from)
  t.same(dnds(harness, '202', from), [{ dnd: true, byCommand: true }, { dnd: true, byCommand: true }],
    'the confirmation and the PBX event that follows it are both ours')
  t.equal(sim.getDnd('202'), true)

  from = harness.observations.mark()
  sentFrom = sent.mark()
  t.same(await adapter.setDnd('202', true), { dnd: true }, 'same value again')
  await barrier(harness, from)
  t.same(dnds(harness, '202', from), [{ dnd: true, byCommand: true }], 'confirmed from the response alone')
  t.notOk(sent.since(sentFrom).some((r) => r.extension === '202'), 'the PBX sent no event for 202')

  from = harness.observations.mark()
  sim.setDndAtPhone('202', false)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '202', { from })
  sim.setDndAtPhone('202', true)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '202' && o.dnd, { from })
  t.same(dnds(harness, '202', from), [{ dnd: false, byCommand: false }, { dnd: true, byCommand: false }],
    'a same-value command expects no event, so the person pressing DND right after it is the person')

  from = harness.observations.mark()
  t.same(await adapter.setDnd('202', false), { dnd: false })
  await barrier(harness, from)
  t.same(dnds(harness, '202', from), [{ dnd: false, byCommand: true }, { dnd: false, byCommand: true }], 'and off again')

  from = harness.observations.mark()
  sim.setDndAtPhone('202', true)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '202', { from })
  t.same(dnds(harness, '202', from), [{ dnd: true, byCommand: false }], 'the person again: a spent command explains nothing')
})

t.test('an extension the PBX does not know is logged and skipped; the others work', async (t) => {
  const users = [{ extension: '299', name: 'Ghost' }, ...USERS]
  const harness = await startAdapter(t, { config: { users } })
  await synchronised(harness, ALL)
  const warning = harness.logs.withMessage('extension unknown to the PBX: not monitored; check the users list')
  t.match(warning, [{ extension: '299', level: 40 }], 'one warning naming it')
  t.notOk(harness.observations.items.some((o) => o.kind === 'snapshot' && o.endpointId === '299'), 'no snapshot for it')
  t.ok(harness.observations.items.some((o) => o.kind === 'directory' && o.entries.some((e) => e.endpointId === '299')), 'still in the directory')
  await t.rejects(harness.adapter.setDnd('299', true), { name: 'AdapterError', code: 'OSBIZ_UNKNOWN_DEVICE' }, 'the PBX refuses the command')
  await t.rejects(harness.adapter.setDnd('555', true), { code: 'OSBIZ_UNKNOWN_DEVICE' }, 'unconfigured endpoints are refused locally')
  t.same(await harness.adapter.setDnd('201', true), { dnd: true })
})

t.test('a monitor limit is reported once, naming the unmonitored extensions', async (t) => {
  const harness = await startAdapter(t, { sim: { maxMonitors: 2 } })
  await synchronised(harness, ['201', '202'])
  await eventually(() => harness.logs.lines().some((line) => line.level === 50), 'the error line', 2000)
  t.match(harness.logs.lines().filter((line) => line.level === 50), [{
    msg: 'PBX monitor limit reached: the listed extensions are not monitored; raise the limit or monitor fewer users',
    monitored: 2,
    unmonitored: ['203'],
  }])
})

t.test('after the PBX drops the link: reconnect, re-monitor, re-read', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ALL)
  const { sim, observations } = harness
  const from = observations.mark()
  sim.dropAllConnections()
  const offline = await observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from })
  t.match(offline, { reason: /^lost the CSTA link to 127\.0\.0\.1:\d+: the PBX closed the connection$/ })
  const callId = sim.incomingCall('202')
  sim.setDndAtPhone('203', true)
  await synchronised(harness, ALL, from)
  const snapshots = observations.since(from).filter((o): o is Extract<PbxObservation, { kind: 'snapshot' }> => o.kind === 'snapshot')
  t.same(snapshots.find((s) => s.endpointId === '202')?.calls, [{ callId, state: 'alerting' }], 'the call that began while offline')
  t.equal(snapshots.find((s) => s.endpointId === '203')?.dnd, true, 'the DND set while offline')
  t.equal(sim.monitorCount, 3, 'monitored again, once each')
  t.equal(sim.stats.sessionsStarted, 2)
  const afterSync = observations.mark()
  sim.answer(callId)
  await observations.waitFor((o) => o.kind === 'call' && o.callId === callId && o.state === 'connected', { from: afterSync })
  t.pass('new monitors deliver events')
})

t.test('session timer resets keep the session alive past twice its duration', async (t) => {
  // The simulator grants 1 s and closes a session at 2 s without a reset.
  const harness = await startAdapter(t, { sim: { sessionDurationS: 1 }, config: { sessionDurationS: 2 } })
  await synchronised(harness, ALL)
  const started = Date.now()
  await eventually(() => Date.now() - started > 2500 && harness.sim.stats.sessionResets >= 6, 'several resets', 5000)
  t.equal(harness.sim.stats.sessionsStarted, 1, 'still the first session')
  t.notOk(harness.observations.items.some((o) => o.kind === 'link' && o.state === 'offline'), 'never offline')
  t.same(await harness.adapter.setDnd('201', true), { dnd: true }, 'and usable')
})

t.test('wrong credentials: offline with the reason, retried, no crash', async (t) => {
  const harness = await startAdapter(t, { sim: { credentials: { applicationId: 'gateway', password: 'right' } }, config: { password: 'hunter2' } })
  const offline = await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline')
  t.match(offline, { reason: 'session rejected: wrong application credentials (invalidApplicationInfo); check the application ID, user name and password' })
  await eventually(() => harness.logs.withMessage('PBX link failed').length >= 2, 'a retry, logged', 5000)
  t.ok(harness.sim.stats.sessionsRejected >= 2, 'each attempt reached the PBX')
  t.equal(harness.observations.items.filter((o) => o.kind === 'link' && o.state === 'offline').length, 1, 'the same failure is reported once')
  await t.rejects(harness.adapter.setDnd('201', true), { code: 'OSBIZ_NOT_CONNECTED' })
  t.notOk(harness.logs.lines().some((line) => JSON.stringify(line).includes('hunter2')), 'the password is never logged')
})

t.test('connection refused, and no free link, are explained in plain words', async (t) => {
  const port = await closedPort()
  const logs = captureLogs()
  const adapter = new OsbizAdapter(osbizConfig({ port }), { logger: logs.logger, clock: systemClock, counters: new Counters() })
  t.teardown(() => adapter.stop())
  const observations = new Recorder<PbxObservation>()
  adapter.onObservation(observations.push)
  await adapter.start()
  t.match(await observations.waitFor((o) => o.kind === 'link' && o.state === 'offline'), {
    reason: `connection refused by 127.0.0.1:${port}: is the CSTA link enabled and is one of the 4 links free?`,
  })

  const busy = await startAdapter(t, { sim: { maxLinks: 0 } })
  t.match(await busy.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline'), {
    reason: /accepted the connection but closed it before the session started: all 4 CSTA links may be in use/,
  })
})

t.test('stop: idempotent, works mid-connect, leaves nothing behind, and start works again', async (t) => {
  const harness = await startAdapter(t, { start: false })
  const { adapter, sim, observations } = harness
  await adapter.start()
  await adapter.stop()
  await adapter.stop()
  await eventually(() => sim.connectionCount === 0, 'no connection left', 2000)
  t.same(observations.items.map((o) => o.kind === 'link' && o.state), ['connecting', 'offline'])
  t.match(observations.items[1], { reason: 'connector stopped' })

  const from = observations.mark()
  await adapter.start()
  await synchronised(harness, ALL, from)
  await adapter.stop()
  await eventually(() => sim.connectionCount === 0, 'closed again', 2000)
  t.equal(sim.monitorCount, 0)
  const err = await adapter.setDnd('201', true).catch((caught: unknown) => caught)
  t.ok(err instanceof AdapterError && err.code === 'OSBIZ_NOT_CONNECTED', 'commands are refused after stop')
})
