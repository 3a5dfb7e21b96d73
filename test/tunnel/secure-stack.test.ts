import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import { startTunnelWorld, untilReady } from './fixtures/tunnel-world.js'

t.test('the box enrolls with a one-time code and syncs over mutual TLS only', async (t) => {
  const world = await startTunnelWorld({ count: 3 })
  t.teardown(() => world.close())
  await untilReady(world, 3)
  const { stack } = world
  const relay = stack.relay!
  const identity = await relay.enrollment.getGateway(stack.gatewayId)
  t.match(identity, { state: 'enrolled', tenantId: 'contoso' }, 'the gateway is enrolled for its tenant')

  const alice = stack.graph.findUser('person1@contoso.example')!
  const call = stack.pbx.incomingCall('301')
  stack.pbx.answer(call)
  await eventually(() => stack.graph.getSession(alice.id, stack.graphClient.clientId), "Teams DND for person 1 through the mutual-TLS tunnel")
  stack.pbx.hangup(call)
  await eventually(() => stack.graph.getSession(alice.id, stack.graphClient.clientId) === undefined, 'cleared after the call')
  t.ok(world.heard.some((h) => h.endpointId === '301' && h.state === 'busy'), 'the broker delivered the busy state')
  t.ok(world.proxy.stats().bytesUp > 0, 'the box reached the broker through the fault proxy')
  await eventually(() => relay.liveness.view(stack.gatewayId)?.state === 'online' ? true : undefined, 'the relay shows the gateway Online', 15_000)
})
