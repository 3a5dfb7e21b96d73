import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import { PbxScript } from './fixtures/pbx-script.js'
import { relayView, startTunnelWorld, untilReady } from './fixtures/tunnel-world.js'

const PEOPLE = 50
const TRANSITIONS = 1000
const CUT_MS = 60_000

t.test('the link is cut for 60 s while 1,000 PBX transitions happen: both sides end right, order kept, nothing lost', async (t) => {
  t.setTimeout(300_000)
  const world = await startTunnelWorld({ count: PEOPLE })
  t.teardown(() => world.close())
  await untilReady(world, PEOPLE)
  const { stack, proxy } = world
  const extensions = stack.people.map((p) => p.extension)
  const script = new PbxScript(stack.pbx, extensions, 20261121)

  // A few transitions with the link up, then the cut.
  await script.run(50, 2_000)
  const cutAt = Date.now()
  proxy.cut()
  await eventually(() => !stack.gateway?.relayConnected, 'the box noticing the cut')
  await script.run(TRANSITIONS, CUT_MS - 10_000)
  const queued = stack.gatewayCounters.get('outbox.puts')
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, CUT_MS - (Date.now() - cutAt))))
  t.ok(Date.now() - cutAt >= CUT_MS, 'the link stayed cut for 60 s')
  const expected = script.expected()

  // The box saw every change on the PBX while cut off.
  const boxView = () => new Map((stack.gateway?.endpoints() ?? []).map((e) => [e.endpointId, e]))
  await eventually(() => extensions.every((e) => boxView().get(e)?.state === expected.get(e)?.state && boxView().get(e)?.dnd === expected.get(e)?.dnd) || undefined,
    'the box to hold the PBX\'s final state', 15_000)

  proxy.restore()
  await eventually(() => stack.gateway?.relayConnected, 'the box back on the relay', 60_000)

  // Relay side: every endpoint's final state equals the box's.
  const wrongAtRelay = () => extensions.filter((e) => {
    const relay = relayView(world).get(e)
    const box = boxView().get(e)
    return !relay || !box || relay.state !== box.state || relay.dnd !== box.dnd || relay.dndOwner !== box.dndOwner
  })
  await eventually(() => wrongAtRelay().length === 0 || undefined, 'the relay to hold every final state', 60_000)
  t.same(wrongAtRelay(), [], 'every endpoint\'s final state is right at the relay')

  // Teams side: a person in a call (busy or held) shows our DND session; everyone else has none.
  const appId = stack.graphClient.clientId
  const wrongAtTeams = () => stack.people.filter((p) => {
    const inCall = ['busy', 'held'].includes(expected.get(p.extension)!.state)
    const session = stack.graph.getSession(stack.graph.findUser(p.email)!.id, appId)
    return inCall !== (session !== undefined)
  }).map((p) => p.extension)
  await eventually(() => wrongAtTeams().length === 0 || undefined, 'Teams to show the final state for everyone', 60_000)
  t.same(wrongAtTeams(), [], 'every person\'s final Teams state is right')

  // Per endpoint, the broker delivered states in seq order (duplicates allowed, never an older one after a newer one).
  const lastSeq = new Map<string, number>()
  const outOfOrder: string[] = []
  for (const h of world.heard) {
    if ((lastSeq.get(h.endpointId) ?? -1) > h.seq) outOfOrder.push(`${h.endpointId}@${h.seq}`)
    lastSeq.set(h.endpointId, Math.max(h.seq, lastSeq.get(h.endpointId) ?? -1))
  }
  t.same(outOfOrder, [], 'per-endpoint order kept')
  const c = stack.gatewayCounters
  t.equal(c.get('outbox.dropped_size') + c.get('outbox.dropped_count') + c.get('outbox.dropped_age'), 0, 'the outbox dropped nothing')
  t.ok(queued > 0, `the outbox took ${queued} state changes while cut off`)
  t.equal(stack.relayCounters.get('relay.invalid_messages'), 0, 'the relay saw no invalid message')
  t.ok(world.lines().some((l) => /outbox drained/.test(l.msg)), 'the box logged the drain')
  t.comment(`transitions: ${script.transitions}, outbox puts: ${queued}, endpoint messages heard: ${world.heard.length}, proxy connections: ${proxy.stats().connections}`)
})
