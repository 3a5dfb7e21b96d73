import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { Gateway } from '../../gateway/src/app.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import type { TapTest } from '../helpers/tap-types.js'

// A connector saved in the setup page while the gateway restarts after an enrollment (the box's UI answers the
// enrollment first and restarts in the background) must end up as one PBX session, not two.

const USERS = [{ extension: '201', name: 'Alice' }, { extension: '202', name: 'Bob' }, { extension: '203', name: 'Carol' }]
const CREDENTIALS = { applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret' }

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function setUp(t: TapTest) {
  const pbx = new OsbizSimulator({ users: USERS, credentials: CREDENTIALS })
  const { port } = await pbx.start()
  t.teardown(() => pbx.stop())
  const dataDir = await mkdtemp(join(tmpdir(), 'gateway-lifecycle-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const base = { relay: { url: 'mqtts://127.0.0.1:1' }, dataDir } // nothing listens there: not enrolled
  const connector = parseGatewayConfig({ ...base, connectors: [{ id: 'osbiz-main', type: 'osbiz', host: '127.0.0.1', port, ...CREDENTIALS, users: USERS }] }, adapterRegistry).connectors[0]!
  const gateway = new Gateway(parseGatewayConfig({ ...base, connectors: [] }, adapterRegistry), { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters(), registry: adapterRegistry })
  await gateway.start()
  t.teardown(() => gateway.stop())
  return { pbx, gateway, connector }
}

t.test('a connector saved during a restart gets one PBX session, and stop closes it', async (t) => {
  const { pbx, gateway, connector } = await setUp(t)
  const restarted = gateway.restart('enrolled')
  // The box's UI: the PUT comes while the restart is starting up again (running, adapters not created yet).
  while (gateway.running) await new Promise((resolve) => setImmediate(resolve))
  while (!gateway.running) await new Promise((resolve) => setImmediate(resolve))
  await gateway.putConnector(connector)
  await restarted
  await until('three monitors', () => pbx.monitorCount >= USERS.length)
  await new Promise((resolve) => setTimeout(resolve, 500)) // a second session would show by now
  t.equal(pbx.connectionCount, 1, 'one CSTA session for the connector')
  t.equal(pbx.monitorCount, USERS.length, 'every extension monitored once')
  t.same(gateway.connectorConfigs().map((c) => c.id), ['osbiz-main'], 'the connector is kept')
  await gateway.stop()
  await until('the session to close', () => pbx.connectionCount === 0)
  t.equal(pbx.connectionCount, 0, 'stop leaves no session behind')
})

t.test('a connector removed during a restart does not come back', async (t) => {
  const { pbx, gateway, connector } = await setUp(t)
  await gateway.putConnector(connector)
  await until('three monitors', () => pbx.monitorCount >= USERS.length)
  const restarted = gateway.restart('enrolled')
  t.equal(await gateway.removeConnector('osbiz-main'), true, 'the connector was there to remove')
  await restarted
  await until('the session to close', () => pbx.connectionCount === 0)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(pbx.connectionCount, 0, 'no session after the restart')
  t.same(gateway.connectorConfigs(), [], 'no connector left')
})

t.test('a failed step does not stop the ones after it', async (t) => {
  const { pbx, gateway, connector } = await setUp(t)
  const broken = { ...connector, type: 'no-such-pbx' } as typeof connector
  await t.rejects(gateway.putConnector(broken), /no adapter registered/, 'a connector of an unknown type is refused')
  await gateway.putConnector(connector)
  await until('three monitors', () => pbx.monitorCount >= USERS.length)
  t.equal(pbx.connectionCount, 1, 'the next change still runs')
})
