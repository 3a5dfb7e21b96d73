import t from 'tap'
import type { CstaMessage } from '../../gateway/src/adapters/osbiz/csta/model.js'
import { OsbizSimulator, type OsbizSimulatorOptions, type SimulatorEventRecord } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { Recorder } from '../helpers/recorder.js'
import type { TapTest } from '../helpers/tap-types.js'
import { eventually } from '../helpers/eventually.js'
import { RawCstaClient } from './fixtures/raw-csta-client.js'

const users = [
  { extension: '201', name: 'Alice', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob', email: 'bob@contoso.example' },
]

async function simulator(t: TapTest, options: OsbizSimulatorOptions = {}): Promise<OsbizSimulator> {
  const sim = new OsbizSimulator({ users, ...options })
  await sim.start()
  t.teardown(() => sim.stop())
  return sim
}

async function client(t: TapTest, sim: OsbizSimulator): Promise<RawCstaClient> {
  const raw = await RawCstaClient.connect(sim.port)
  t.teardown(() => raw.close())
  return raw
}

async function monitor(raw: RawCstaClient, device: string): Promise<string> {
  const response = await raw.request({ kind: 'MonitorStart', device })
  if (response.kind !== 'MonitorStartResponse') throw new Error(`MonitorStart ${device} failed: ${JSON.stringify(response)}`)
  return response.monitorCrossRefId
}

const kinds = (frames: Array<{ message: CstaMessage }>): string[] => frames.map((frame) => frame.message.kind)

t.test('session: credentials are checked, the grant is capped, SystemStatus follows', async (t) => {
  const sim = await simulator(t, { credentials: { applicationId: 'gateway', username: 'csta', password: 'secret' }, sessionDurationS: 60 })
  const good = await client(t, sim)
  t.match(await good.request({ kind: 'MonitorStart', device: '201' }), { kind: 'CSTAErrorCode', value: 'securityViolation' }, 'nothing before a session')
  t.match(await good.startSession('gateway', { username: 'csta', password: 'secret', requestedSessionDurationS: 180 }),
    { kind: 'StartApplicationSessionPosResponse', sessionId: /^[0-9a-f]{16}$/, actualSessionDurationS: 60 })
  const status = await good.frames.waitFor((f) => f.message.kind === 'SystemStatus', { what: 'SystemStatus' })
  t.ok(status.invokeId >= 9000 && status.invokeId < 9999, `the switch's own invoke id (${status.invokeId})`)
  good.send(status.invokeId, { kind: 'SystemStatusResponse' })
  await eventually(() => sim.stats.systemStatusAnswered === 1, 'the answer', 2000)

  const bad = await client(t, sim)
  t.match(await bad.startSession('gateway', { username: 'csta', password: 'wrong' }),
    { kind: 'StartApplicationSessionNegResponse', errorCode: 'invalidApplicationInfo' })
  await bad.closed
  t.pass('a rejected client is disconnected')
  t.equal(sim.stats.sessionsRejected, 1)
})

t.test('session: closed at twice its duration without a reset, kept alive with resets', async (t) => {
  const sim = await simulator(t, { sessionDurationS: 0.4 })
  const idle = await client(t, sim)
  const started = Date.now()
  await idle.startSession('gateway', { requestedSessionDurationS: 10 })
  await idle.closed
  const elapsed = Date.now() - started
  t.ok(elapsed >= 750, `closed after ${elapsed} ms (2 × 400 ms)`)

  const busy = await client(t, sim)
  const response = await busy.startSession()
  if (response.kind !== 'StartApplicationSessionPosResponse') throw new Error('no session')
  const keepAliveStart = Date.now()
  const answers: CstaMessage[] = []
  while (Date.now() - keepAliveStart < 1200) {
    answers.push(await busy.request({ kind: 'ResetApplicationSessionTimer', sessionId: response.sessionId, requestedSessionDurationS: 10 }))
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.ok(answers.every((answer) => answer.kind === 'ResetApplicationSessionTimerPosResponse' && answer.actualSessionDurationS === 0.4),
    `${answers.length} resets confirmed with the granted duration`)
  t.notOk(busy.isClosed, 'alive past 3 × the duration')
  t.match(await busy.request({ kind: 'ResetApplicationSessionTimer', sessionId: 'wrong', requestedSessionDurationS: 10 }),
    { kind: 'ResetApplicationSessionTimerNegResponse', errorCode: 'invalidSessionID' })
})

t.test('heartbeat: a client that does not answer SystemStatus is dropped', async (t) => {
  const strict = await simulator(t, { systemStatusIntervalS: 0.05, systemStatusMaxMissed: 2 })
  const silent = await client(t, strict)
  await silent.startSession()
  await silent.closed
  t.ok(strict.stats.systemStatusSent >= 2, 'after unanswered SystemStatus requests')

  // More slack here: the answer only has to beat several intervals, even on a loaded machine.
  const sim = await simulator(t, { systemStatusIntervalS: 0.05, systemStatusMaxMissed: 8 })
  const polite = await client(t, sim)
  polite.answerSystemStatus()
  await polite.startSession()
  await eventually(() => sim.stats.systemStatusAnswered >= 10, 'ten answered heartbeats', 3000)
  t.notOk(polite.isClosed, 'a client that answers stays')
})

t.test('DND: a change is answered, then announced; the same value is answered with no event', async (t) => {
  const sim = await simulator(t)
  const raw = await client(t, sim)
  await raw.startSession()
  const xref201 = await monitor(raw, '201')
  await monitor(raw, '202')
  t.same(await raw.request({ kind: 'SetDoNotDisturb', device: '201', doNotDisturbOn: true }), { kind: 'SetDoNotDisturbResponse' })
  const event = await raw.waitForEvent((m) => m.kind === 'DoNotDisturbEvent', 0, 'DND event')
  t.same(event.message, { kind: 'DoNotDisturbEvent', monitorCrossRefId: xref201, device: '201', doNotDisturbOn: true })
  t.notMatch(event.xml, 'xmlns', 'events come without xmlns')
  t.ok(sim.getDnd('201'))

  const from = raw.frames.mark()
  t.same(await raw.request({ kind: 'SetDoNotDisturb', device: '201', doNotDisturbOn: true }), { kind: 'SetDoNotDisturbResponse' }, 'same value: positive')
  sim.setDndAtPhone('202', true)
  await raw.waitForEvent((m) => m.kind === 'DoNotDisturbEvent' && m.device === '202', from, 'barrier event')
  t.same(kinds(raw.frames.since(from)), ['SetDoNotDisturbResponse', 'DoNotDisturbEvent'], 'no event for 201 in between')
  t.match(await raw.request({ kind: 'GetDoNotDisturb', device: '201' }), { kind: 'GetDoNotDisturbResponse', doNotDisturbOn: true })
})

t.test('errors: unknown devices and cross references', async (t) => {
  const sim = await simulator(t)
  const raw = await client(t, sim)
  await raw.startSession()
  const invalidDevice = { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' }
  t.same(await raw.request({ kind: 'MonitorStart', device: '299' }), invalidDevice, 'MonitorStart')
  t.same(await raw.request({ kind: 'SnapshotDevice', device: '299' }), invalidDevice, 'SnapshotDevice')
  t.same(await raw.request({ kind: 'GetDoNotDisturb', device: '299' }), invalidDevice, 'GetDoNotDisturb')
  t.same(await raw.request({ kind: 'SetDoNotDisturb', device: '299', doNotDisturbOn: true }), invalidDevice, 'SetDoNotDisturb')
  t.same(await raw.request({ kind: 'MonitorStop', monitorCrossRefId: '4711' }),
    { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidCrossReferenceID' }, 'MonitorStop')
  const xref = await monitor(raw, '201')
  t.same(await raw.request({ kind: 'MonitorStop', monitorCrossRefId: xref }), { kind: 'MonitorStopResponse' })
  t.match(await raw.request({ kind: 'Unknown', element: 'GetForwarding' }), { kind: 'CSTAErrorCode' }, 'unsupported services are refused')
})

t.test('limits: monitors over all links, and at most maxLinks links', async (t) => {
  const sim = await simulator(t, { maxMonitors: 1, maxLinks: 1 })
  const raw = await client(t, sim)
  await raw.startSession()
  await monitor(raw, '201')
  t.same(await raw.request({ kind: 'MonitorStart', device: '202' }),
    { kind: 'CSTAErrorCode', category: 'systemResourceAvailability', value: 'overallMonitorLimitExceeded' })
  t.equal(sim.monitorCount, 1)
  const second = await RawCstaClient.connect(sim.port)
  await second.closed
  t.equal(sim.stats.linksRefused, 1, 'the second link is refused')
  await raw.close()
  await eventually(() => sim.monitorCount === 0 && sim.connectionCount === 0, 'monitors released with the link', 2000)
  t.pass('monitors die with their link')
})

t.test('calls: events per monitored device, each with its own view', async (t) => {
  const sim = await simulator(t)
  const raw = await client(t, sim)
  await raw.startSession()
  const xref201 = await monitor(raw, '201')
  const xref202 = await monitor(raw, '202')
  const sent = new Recorder<SimulatorEventRecord>()
  sim.onEventSent(sent.push)

  const from = raw.frames.mark()
  const callId = sim.outgoingCall('201', '202')
  await raw.waitForEvent((m) => m.kind === 'DeliveredEvent' && m.monitorCrossRefId === xref202, from)
  const events = raw.frames.since(from).filter((f) => f.invokeId === 9999).map((f) => f.message)
  t.match(events, [
    { kind: 'ServiceInitiatedEvent', monitorCrossRefId: xref201, connection: { callId, deviceId: '201' }, localConnectionInfo: 'initiated' },
    { kind: 'OriginatedEvent', monitorCrossRefId: xref201, callingDevice: '201', calledDevice: '202', localConnectionInfo: 'connected' },
    { kind: 'DeliveredEvent', monitorCrossRefId: xref201, alertingDevice: '202', localConnectionInfo: 'connected' },
    { kind: 'DeliveredEvent', monitorCrossRefId: xref202, alertingDevice: '202', localConnectionInfo: 'alerting' },
  ])
  t.same(sent.items.map((r) => `${r.type}:${r.extension}`),
    ['ServiceInitiatedEvent:201', 'OriginatedEvent:201', 'DeliveredEvent:201', 'DeliveredEvent:202'], 'the event hook saw each one')
  t.ok(sent.items.every((r) => typeof r.at === 'number' && r.at > 0), 'with a performance.now() timestamp')
  t.match(await raw.request({ kind: 'SnapshotDevice', device: '202' }),
    { kind: 'SnapshotDeviceResponse', calls: [{ callId, deviceId: '202', localConnectionState: 'alerting' }] })

  sim.answer(callId)
  sim.hold(callId, '201')
  sim.retrieve(callId, '201')
  await raw.waitForEvent((m) => m.kind === 'RetrievedEvent' && m.monitorCrossRefId === xref202, from, 'retrieved')
  const beforeHangup = raw.frames.mark()
  sim.hangup(callId, '202')
  await raw.waitForEvent((m) => m.kind === 'ConnectionClearedEvent' && m.monitorCrossRefId === xref201 && m.connection.deviceId === '201', beforeHangup)
  t.match(raw.frames.since(beforeHangup).map((f) => f.message), [
    { kind: 'ConnectionClearedEvent', monitorCrossRefId: xref201, connection: { deviceId: '202' }, localConnectionInfo: 'connected' },
    { kind: 'ConnectionClearedEvent', monitorCrossRefId: xref202, connection: { deviceId: '202' }, localConnectionInfo: 'null' },
    { kind: 'ConnectionClearedEvent', monitorCrossRefId: xref201, connection: { deviceId: '201' }, localConnectionInfo: 'null' },
  ], 'the releasing party first, then the switch clears the rest')
  t.same(sim.calls(), [], 'the call is gone')
  t.throws(() => sim.answer(callId), /unknown call/)
  t.throws(() => sim.incomingCall('299'), /unknown extension/)
})

t.test('a client that sends garbage loses its link; raw bytes reach clients', async (t) => {
  const sim = await simulator(t)
  const raw = await client(t, sim)
  await raw.startSession()
  t.equal(sim.sendRaw(Buffer.from([0, 0, 0, 9, 0x31, 0x32, 0x33, 0x34, 0x3c])), 1, 'one client got the bytes')
  await eventually(() => raw.errors.length > 0 || raw.frames.items.some((f) => f.invokeId === 1234), 'the raw frame', 2000)
  raw.writeRaw(Buffer.from('GET / HTTP/1.1\r\n\r\n'))
  await raw.closed
  t.pass('closed by the simulator')
})

t.test('stop is idempotent and closes every link', async (t) => {
  const sim = new OsbizSimulator({ users })
  await sim.start()
  const raw = await RawCstaClient.connect(sim.port)
  await Promise.all([sim.stop(), sim.stop()])
  await raw.closed
  t.equal(sim.connectionCount, 0)
})
