import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import type { TapTest } from '../helpers/tap-types.js'
import { fakeClock } from '../helpers/faketime.js'
import { startBoxProcess } from './fixtures/box-process.js'
import { PbxScript } from './fixtures/pbx-script.js'
import { relayView, startTunnelWorld, type TunnelWorld } from './fixtures/tunnel-world.js'

const PEOPLE = 30

/** Relay and Teams both hold the final PBX state of every extension. */
async function converged(t: TapTest, world: TunnelWorld, script: PbxScript, what: string): Promise<void> {
  const { stack } = world
  const expected = script.expected()
  const wrongAtRelay = () => stack.people.map((p) => p.extension).filter((e) => {
    const relay = relayView(world).get(e)
    const want = expected.get(e)!
    return !relay || relay.state !== want.state || relay.dnd !== want.dnd
  })
  await eventually(() => wrongAtRelay().length === 0 || undefined, `${what}: the relay to hold every final state`, 60_000)
  t.same(wrongAtRelay(), [], `${what}: every endpoint's final state is right at the relay`)
  const appId = stack.graphClient.clientId
  const wrongAtTeams = () => stack.people.filter((p) => {
    const inCall = ['busy', 'held'].includes(expected.get(p.extension)!.state)
    return inCall !== (stack.graph.getSession(stack.graph.findUser(p.email)!.id, appId) !== undefined)
  }).map((p) => p.extension)
  await eventually(() => wrongAtTeams().length === 0 || undefined, `${what}: Teams to show every final state`, 60_000)
  t.same(wrongAtTeams(), [], `${what}: every person's Teams state is right`)
}

t.test('kill -9 of the box in the middle of a burst: it restarts from its outbox and both sides end right', async (t) => {
  t.setTimeout(240_000)
  const world = await startTunnelWorld({ count: PEOPLE, startGateway: false })
  t.teardown(() => world.close())
  await world.stack.enrollGateway()
  let box = await startBoxProcess(world.stack)
  t.teardown(() => box.kill9())
  await eventually(() => relayView(world).size === PEOPLE || undefined, 'the box process to report every extension', 30_000)
  const script = new PbxScript(world.stack.pbx, world.stack.people.map((p) => p.extension), 7)

  // The link is cut while the PBX keeps changing, so the outbox holds the burst; then the link comes back and the
  // box is killed while it replays and keeps writing new changes.
  world.proxy.cut()
  await script.run(300, 3_000)
  world.proxy.restore()
  const heardBefore = world.heard.length
  const burst = script.run(300, 3_000)
  await eventually(() => world.heard.length > heardBefore || undefined, 'the replay to start', 40_000)
  await box.kill9()
  t.pass(`killed with SIGKILL after ${world.heard.length - heardBefore} messages of the replay`)
  await burst
  await script.run(100, 1_000) // the PBX changes while the box is down
  box = await startBoxProcess(world.stack)
  await converged(t, world, script, 'after the restart')
  t.notOk(box.output.join('').includes('"level":60'), 'the restarted box logged no fatal error')
})

t.test('a box whose clock is a day behind: a clear error, and it recovers once the clock is corrected', async (t) => {
  t.setTimeout(180_000)
  const world = await startTunnelWorld({ count: 3, startGateway: false })
  t.teardown(() => world.close())
  await world.stack.enrollGateway()
  const clock = await fakeClock(`${world.dataDir}/faketime`, '-1d')
  const box = await startBoxProcess(world.stack, clock.env)
  t.teardown(() => box.kill9())
  const clockError = () => box.output.join('').split('\n').find((line) => /not yet valid by this box's clock.*NTP/.test(line))
  const line = await eventually(clockError, 'the box to say its clock is wrong', 30_000)
  t.match(line, /check the box's date and time \(NTP\)/, 'the error says what to do')
  t.equal(relayView(world).size, 0, 'nothing got through while the clock was wrong')

  await clock.set('+0')
  await eventually(() => relayView(world).size === 3 || undefined, 'the box to connect once the clock is right', 60_000)
  const script = new PbxScript(world.stack.pbx, world.stack.people.map((p) => p.extension), 3)
  await script.run(20, 500)
  await converged(t, world, script, 'after the clock was corrected')
})

t.test('a box whose clock is a day ahead: the relay says so in its log and in the gateway\'s status, until it is corrected', async (t) => {
  t.setTimeout(120_000)
  const world = await startTunnelWorld({ count: 3, startGateway: false })
  t.teardown(() => world.close())
  await world.stack.enrollGateway()
  const clock = await fakeClock(`${world.dataDir}/faketime`, '+1d')
  const box = await startBoxProcess(world.stack, clock.env)
  t.teardown(() => box.kill9())
  const warning = await eventually(() => world.lines().find((l) => /clock is 24\.0 h ahead of the relay.*enable NTP/.test(l.msg)), 'the relay to report the box\'s clock', 30_000)
  t.ok(warning, 'the relay logs the skew and what to do')
  t.ok(world.stack.relayCounters.get('relay.gateway_clock_skew') >= 1, 'and counts it')
  await eventually(() => /clock is 24\.0 h ahead/.test(world.stack.relay?.liveness.view(world.stack.gatewayId)?.reason ?? '') || undefined, 'the gateway status to mention it', 30_000)
  await clock.set('+0')
  await box.stop() // a new birth with the right time
  const again = await startBoxProcess(world.stack)
  t.teardown(() => again.kill9())
  await eventually(() => world.lines().some((l) => l.msg === 'gateway clock is right again') || undefined, 'the relay to see the clock corrected', 30_000)
  await eventually(() => !/clock/.test(world.stack.relay?.liveness.view(world.stack.gatewayId)?.reason ?? 'clock') || undefined, 'the status to drop the clock warning', 30_000)
})
