import t from 'tap'
import pino from 'pino'
import { lazyAdapterDefinition } from '../../gateway/src/adapters/lazy-adapter.js'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { osbizAdapterDefinition } from '../../gateway/src/adapters/osbiz/index.js'
import { checkOsbizConfig, OsbizConfigSchema, parseOsbizConfig } from '../../gateway/src/adapters/osbiz/config.js'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import type { AdapterDefinition, PbxObservation } from '../../gateway/src/adapters/types.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'

// The registry imports an adapter's code when a connector of its type first runs (so a box loads one PBX's wire
// code and packages, not all of them); the stand-in must behave as the real adapter from the first call on.

const USERS = [{ extension: '201', name: 'Alice' }, { extension: '202', name: 'Bob' }]
const CREDENTIALS = { applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret' }

function osbizConfig(port: number) {
  const parsed = parseOsbizConfig({ id: 'osbiz-main', type: 'osbiz', host: '127.0.0.1', port, ...CREDENTIALS, users: USERS })
  if (!parsed.ok) throw new Error(parsed.errors.join('; '))
  return parsed.config
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

t.test('the registry knows every PBX type and the config schema of each', async (t) => {
  t.same([...adapterRegistry.keys()], ['osbiz', 'avaya-ipo', 'innovaphone'])
  t.equal(adapterRegistry.get('osbiz')?.configSchema, OsbizConfigSchema, 'the schema is the adapter\'s own')
  t.match(adapterRegistry.get('osbiz')?.check({ id: 'x', type: 'osbiz', users: [{ extension: '201' }, { extension: '201' }] } as { id: string; type: string }), [/duplicate extension 201/], 'the cross-field check works before the adapter\'s code is loaded')
})

t.test('an adapter is loaded once, at its first start, and serves listeners registered before that', async (t) => {
  const pbx = new OsbizSimulator({ users: USERS, credentials: CREDENTIALS })
  const { port } = await pbx.start()
  t.teardown(() => pbx.stop())
  let loads = 0
  const definition = lazyAdapterDefinition('osbiz', OsbizConfigSchema, checkOsbizConfig, async () => {
    loads++
    return osbizAdapterDefinition as unknown as AdapterDefinition
  })
  const config = osbizConfig(port)
  const deps = { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters() }

  const idle = definition.create(config, deps)
  t.equal(idle.connectorId, 'osbiz-main')
  t.equal(idle.type, 'osbiz')
  await idle.stop()
  t.equal(loads, 0, 'creating and stopping an adapter that never ran loads nothing')

  const adapter = definition.create(config, deps)
  const seen: PbxObservation[] = []
  const off = adapter.onObservation((o) => seen.push(o))
  t.equal(loads, 0, 'registering a listener loads nothing')
  await adapter.start()
  t.equal(loads, 1, 'start loads the adapter')
  await until('the link up and both extensions monitored', () => seen.some((o) => o.kind === 'link' && o.state === 'connected') && pbx.monitorCount === USERS.length)

  t.same(await adapter.setDnd('201', true), { dnd: true }, 'setDnd reaches the PBX through the real adapter')
  await until('the PBX to report the DND', () => seen.some((o) => o.kind === 'dnd' && o.endpointId === '201' && o.dnd))
  pbx.incomingCall('202')
  await until('the call on 202', () => seen.some((o) => o.kind === 'call' && o.endpointId === '202'))

  off()
  const before = seen.length
  pbx.setDndAtPhone('202', true)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(seen.length, before, 'a removed listener hears nothing more')

  const second = definition.create({ ...config, id: 'osbiz-second' }, deps)
  await second.setDnd('201', false).catch(() => undefined)
  t.equal(loads, 1, 'a second adapter of the type reuses the loaded code')
  await second.stop()

  await adapter.stop()
  await until('the session to close', () => pbx.connectionCount === 0)
  t.equal(pbx.connectionCount, 0, 'stop closes the real adapter\'s session')
})

t.test('a stop while the adapter is still loading waits and closes it', async (t) => {
  const pbx = new OsbizSimulator({ users: USERS, credentials: CREDENTIALS })
  const { port } = await pbx.start()
  t.teardown(() => pbx.stop())
  let release: () => void = () => undefined
  const gate = new Promise<void>((resolve) => { release = resolve })
  const definition = lazyAdapterDefinition('osbiz', OsbizConfigSchema, checkOsbizConfig, async () => {
    await gate
    return osbizAdapterDefinition as unknown as AdapterDefinition
  })
  const config = osbizConfig(port)
  const adapter = definition.create(config, { logger: pino({ level: 'silent' }), clock: systemClock, counters: new Counters() })
  const started = adapter.start()
  const stopped = adapter.stop()
  release()
  await started
  await stopped
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(pbx.connectionCount, 0, 'no session is left behind')
})
