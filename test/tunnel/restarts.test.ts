import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import { PbxScript } from './fixtures/pbx-script.js'
import { relayView, startTunnelWorld } from './fixtures/tunnel-world.js'

const PEOPLE = 20

t.test('relay restart (its embedded broker with it) during a burst, then duplicated delivery: both sides end right', async (t) => {
  t.setTimeout(240_000)
  const world = await startTunnelWorld({ count: PEOPLE })
  t.teardown(() => world.close())
  const { stack } = world
  await eventually(() => relayView(world).size === PEOPLE || undefined, 'every extension at the relay', 30_000)
  const script = new PbxScript(stack.pbx, stack.people.map((p) => p.extension), 11)
  await script.run(100, 1_000)

  await stack.stopRelay()
  await script.run(200, 2_000) // the relay and its broker are gone: the box keeps the changes in its outbox
  await stack.startRelay()
  await world.renewMonitorCertificate()
  const expected = script.expected()
  const wrong = () => [...expected].filter(([e, want]) => {
    const have = relayView(world).get(e)
    return !have || have.state !== want.state || have.dnd !== want.dnd
  }).map(([e]) => e)
  await eventually(() => wrong().length === 0 || undefined, 'the restarted relay to hold every final state', 60_000)
  t.same(wrong(), [], 'every endpoint\'s final state is right after the relay restart')
  const appId = stack.graphClient.clientId
  const wrongAtTeams = () => stack.people.filter((p) => {
    const inCall = ['busy', 'held'].includes(expected.get(p.extension)!.state)
    return inCall !== (stack.graph.getSession(stack.graph.findUser(p.email)!.id, appId) !== undefined)
  }).map((p) => p.extension)
  await eventually(() => wrongAtTeams().length === 0 || undefined, 'Teams to show every final state', 60_000)
  t.same(wrongAtTeams(), [], 'every person\'s Teams state is right after the relay restart')

  // Duplicated delivery: the broker hands the relay the same messages again (older ones among them).
  await eventually(() => world.monitor.connected || undefined, 'the monitor back on the restarted broker')
  // The relay's own DND writes for the people in a call still come back from the box for a moment after the final
  // states are right (the owner turns to "gateway"): compare with a view that held still for a second.
  let last = JSON.stringify([...relayView(world)])
  let since = Date.now()
  await eventually(() => {
    const now = JSON.stringify([...relayView(world)])
    if (now !== last) { last = now; since = Date.now() }
    return Date.now() - since >= 1_000 || undefined
  }, 'the relay view to hold still', 30_000)
  const before = new Map(relayView(world))
  const staleBefore = stack.relayCounters.get('sync.endpoint_stale_events')
  const replayed = world.heard.slice(-60)
  t.ok(replayed.length > 0, `${replayed.length} delivered messages to send again`)
  for (const h of replayed) await world.monitor.publishAsync(h.topic, h.payload, { qos: 1 })
  await eventually(() => stack.relayCounters.get('sync.endpoint_stale_events') >= staleBefore + replayed.length || undefined, 'the relay to see every duplicate', 20_000)
  t.same(relayView(world), before, 'duplicates change nothing at the relay')
  t.same(wrongAtTeams(), [], 'and nothing in Teams')
})
