import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { XmlCstaCodec } from '../../gateway/src/adapters/osbiz/csta/xml-codec.js'
import { encodeXmlFrame } from '../../gateway/src/adapters/osbiz/csta/xml-framing.js'
import { OsbizDriver, type DriverClosed, type OsbizDriverOptions } from '../../gateway/src/adapters/osbiz/driver.js'
import { CstaLinkError } from '../../gateway/src/adapters/osbiz/link-error.js'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { closedPort } from '../helpers/free-port.js'
import { captureLogs, type LogCapture } from './fixtures/logs.js'
import type { TapTest } from '../helpers/tap-types.js'
import { eventually } from '../helpers/eventually.js'
import { acceptSession, ScriptedCstaServer, type ScriptedRequest } from './fixtures/scripted-server.js'

interface Harness {
  driver: OsbizDriver
  logs: LogCapture
  counters: Counters
  closed: Promise<DriverClosed>
}

function driverFor(t: TapTest, port: number, options: Partial<OsbizDriverOptions> = {}): Harness {
  const logs = captureLogs()
  const counters = new Counters()
  const driver = new OsbizDriver({
    host: '127.0.0.1', port, codec: new XmlCstaCodec(), applicationId: 'gateway',
    sessionDurationS: 60, requestTimeoutMs: 500, probeIntervalMs: 60_000, ...options,
  }, { logger: logs.logger, clock: systemClock, counters })
  t.teardown(() => driver.close())
  const closed = new Promise<DriverClosed>((resolve) => driver.onClose(resolve))
  return { driver, logs, counters, closed }
}

async function scripted(t: TapTest, onRequest: (request: ScriptedRequest) => void): Promise<ScriptedCstaServer> {
  const server = await ScriptedCstaServer.start(onRequest)
  t.teardown(() => server.stop())
  return server
}

async function rejection(promise: Promise<unknown>): Promise<CstaLinkError> {
  const error = await promise.then(() => undefined, (caught: unknown) => caught)
  if (!(error instanceof CstaLinkError)) throw new Error(`expected a CstaLinkError, got ${String(error)}`)
  return error
}

t.test('starts a session with the simulator and answers its SystemStatus with the same invoke id', async (t) => {
  const sim = new OsbizSimulator({ users: [{ extension: '201', name: 'Alice' }], credentials: { applicationId: 'gateway', password: 'pw' }, sessionDurationS: 90 })
  await sim.start()
  t.teardown(() => sim.stop())
  const { driver } = driverFor(t, sim.port, { password: 'pw', sessionDurationS: 120 })
  const session = await driver.open()
  t.match(session, { sessionId: /^[0-9a-f]+$/, sessionDurationS: 90 }, 'the granted duration wins')
  await eventually(() => sim.stats.systemStatusAnswered === 1, 'SystemStatus answered', 2000)
  t.match(await driver.request({ kind: 'GetDoNotDisturb', device: '201' }), { kind: 'GetDoNotDisturbResponse', doNotDisturbOn: false })
  await driver.close()
  await driver.close()
  await eventually(() => sim.connectionCount === 0, 'link closed', 2000)
  t.pass('close is idempotent and ends the link')
})

t.test('correlates answers by invoke id, whatever their order', async (t) => {
  const held: ScriptedRequest[] = []
  const server = await scripted(t, (request) => {
    if (acceptSession(request)) return
    held.push(request)
    if (held.length === 2) {
      for (const { invokeId, message, connection } of held.reverse()) {
        if (message.kind === 'GetDoNotDisturb') connection.send(invokeId, { kind: 'GetDoNotDisturbResponse', doNotDisturbOn: message.device === '202' })
      }
    }
  })
  const { driver } = driverFor(t, server.port)
  await driver.open()
  const [a, b] = await Promise.all([
    driver.request({ kind: 'GetDoNotDisturb', device: '201' }),
    driver.request({ kind: 'GetDoNotDisturb', device: '202' }),
  ])
  t.same([a.doNotDisturbOn, b.doNotDisturbOn], [false, true])
  const ids = server.requests.items.map((r) => r.invokeId)
  t.ok(ids.every((id) => id >= 1 && id <= 8999), `client invoke ids in 1..8999 (${ids.join(',')})`)
})

t.test('turns CSTAErrorCode, silence and broken answers into typed errors', async (t) => {
  const server = await scripted(t, (request) => {
    if (acceptSession(request)) return
    const { message, invokeId, connection } = request
    if (message.kind === 'MonitorStart') connection.send(invokeId, { kind: 'CSTAErrorCode', category: 'operation', value: 'invalidDeviceID' })
    if (message.kind === 'SnapshotDevice') connection.writeRaw(encodeXmlFrame(invokeId, Buffer.from('<SnapshotDeviceResponse><oops')))
    if (message.kind === 'SetDoNotDisturb') connection.send(invokeId, { kind: 'MonitorStopResponse' })
    if (message.kind === 'MonitorStop') connection.send(invokeId, { kind: 'Unknown', element: 'WeirdResponse' })
    // GetDoNotDisturb: no answer now, a late one after the timeout.
    if (message.kind === 'GetDoNotDisturb') setTimeout(() => connection.send(invokeId, { kind: 'GetDoNotDisturbResponse', doNotDisturbOn: true }), 700)
  })
  const { driver, counters } = driverFor(t, server.port, { requestTimeoutMs: 400 })
  await driver.open()
  t.match(await rejection(driver.request({ kind: 'MonitorStart', device: '299' })),
    { code: 'CSTA_ERROR', detail: { category: 'operation', value: 'invalidDeviceID', request: 'MonitorStart' } })
  t.match(await rejection(driver.request({ kind: 'SnapshotDevice', device: '201' })), { code: 'MALFORMED_RESPONSE' }, 'without waiting for the timeout')
  t.match(await rejection(driver.request({ kind: 'SetDoNotDisturb', device: '201', doNotDisturbOn: true })), { code: 'UNEXPECTED_RESPONSE' })
  t.match(await rejection(driver.request({ kind: 'GetDoNotDisturb', device: '201' })), { code: 'REQUEST_TIMEOUT' })
  t.equal(counters.get('osbiz.requests.timeout'), 1)
  await eventually(() => counters.get('osbiz.responses.unmatched') === 1, 'the late answer', 2000)
  t.ok(driver.isOpen, 'none of this closes the link')
  t.match(await rejection(driver.request({ kind: 'MonitorStop', monitorCrossRefId: '1' })), { code: 'UNEXPECTED_RESPONSE' }, 'an unknown answer fails the request')
  t.equal(counters.get('osbiz.messages.unknown'), 1)
})

t.test('an unanswered liveness probe closes the link', async (t) => {
  const server = await scripted(t, (request) => {
    acceptSession(request)
  })
  const { driver, closed } = driverFor(t, server.port, { probeIntervalMs: 50, requestTimeoutMs: 150 })
  await driver.open()
  t.match(await closed, { code: 'PROBE_TIMEOUT', reason: /RequestSystemStatus/ })
  t.ok(server.requests.items.some((r) => r.message.kind === 'RequestSystemStatus'), 'the probe was sent')
  t.notOk(driver.isOpen)
  t.match(await rejection(driver.request({ kind: 'GetDoNotDisturb', device: '201' })), { code: 'NOT_OPEN' })
})

t.test('a session the switch will not renew closes the link', async (t) => {
  const server = await scripted(t, (request) => {
    if (acceptSession(request, 0.3)) return
    if (request.message.kind === 'ResetApplicationSessionTimer') {
      request.connection.send(request.invokeId, { kind: 'ResetApplicationSessionTimerNegResponse', errorCode: 'invalidSessionID' })
    }
  })
  const { driver, closed } = driverFor(t, server.port)
  await driver.open()
  t.match(await closed, { code: 'SESSION_RESET_FAILED', reason: /invalidSessionID/ })
})

t.test('session start failures are told apart', async (t) => {
  const refused = driverFor(t, await closedPort())
  t.match(await rejection(refused.driver.open()), { code: 'CONNECT_REFUSED', detail: { errno: 'ECONNREFUSED' } })

  const silent = await scripted(t, () => undefined)
  t.match(await rejection(driverFor(t, silent.port, { requestTimeoutMs: 150 }).driver.open()), { code: 'SESSION_TIMEOUT' })

  const hangsUp = await scripted(t, (request) => request.connection.destroy())
  t.match(await rejection(driverFor(t, hangsUp.port).driver.open()), { code: 'CLOSED_BEFORE_SESSION' })

  const rejects = await scripted(t, (request) => request.connection.send(request.invokeId, { kind: 'StartApplicationSessionNegResponse', errorCode: 'invalidApplicationInfo' }))
  t.match(await rejection(driverFor(t, rejects.port).driver.open()), { code: 'SESSION_REJECTED', detail: { value: 'invalidApplicationInfo' } })

  const once = driverFor(t, rejects.port)
  await once.driver.open().catch(() => undefined)
  t.match(await rejection(once.driver.open()), { code: 'NOT_OPEN' }, 'a driver opens only once')
})

t.test('close() ends the session with StopApplicationSession, and works while connecting', async (t) => {
  const server = await scripted(t, (request) => {
    acceptSession(request)
  })
  const { driver } = driverFor(t, server.port)
  await driver.open()
  const started = Date.now()
  await driver.close()
  t.ok(Date.now() - started < 500, 'without waiting for a timeout')
  t.match(server.requests.items.map((r) => r.message), [{ kind: 'StartApplicationSession' }, { kind: 'StopApplicationSession', sessionId: 'scripted', reason: 'normal' }])

  const silent = await scripted(t, () => undefined)
  const early = driverFor(t, silent.port, { requestTimeoutMs: 5000 })
  const opening = early.driver.open()
  await early.driver.close()
  t.match(await rejection(opening), { code: 'LINK_CLOSED' }, 'open() is abandoned at once')
})

t.test('events reach listeners in stream order; a throwing listener is logged, not fatal', async (t) => {
  const server = await scripted(t, (request) => {
    acceptSession(request)
    if (request.message.kind !== 'StartApplicationSession') return
    for (const on of [true, false, true]) {
      request.connection.send(9999, { kind: 'DoNotDisturbEvent', monitorCrossRefId: '1', doNotDisturbOn: on })
    }
  })
  const { driver, logs } = driverFor(t, server.port)
  const seen: boolean[] = []
  driver.onEvent(() => {
    throw new Error('listener bug')
  })
  driver.onEvent((event) => {
    if (event.kind === 'DoNotDisturbEvent') seen.push(event.doNotDisturbOn)
  })
  await driver.open()
  await eventually(() => seen.length === 3, 'three events', 2000)
  t.same(seen, [true, false, true])
  t.equal(logs.withMessage('CSTA event listener threw').length, 3)
})
