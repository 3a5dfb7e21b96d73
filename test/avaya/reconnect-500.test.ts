import t from 'tap'
import { startAvaya, synchronised } from './fixtures/harness.js'

const PEOPLE = 500
const RATE = 200
const users = Array.from({ length: PEOPLE }, (_, i) => ({ extension: String(3000 + i), name: `User ${i}`, email: `user${i}@contoso.example` }))
const extensions = users.map((user) => user.extension)

t.test(`after a drop, ${PEOPLE} users get all subscriptions and the right state back, at the throttled rate`, async (t) => {
  const harness = await startAvaya(t, { users, config: { subscriptionsPerSecond: RATE } })
  await synchronised(harness, extensions, 0, 15000)
  // State that must survive: calls in every state class and DND on some people.
  const ringing = harness.sim.incomingCall('3001')
  const talking = harness.sim.incomingCall('3002')
  harness.sim.answer(talking)
  const held = harness.sim.incomingCall('3003')
  harness.sim.answer(held)
  harness.sim.hold(held, '3003')
  for (const extension of ['3010', '3499']) harness.sim.setDndAtPhone(extension, true)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '3499' && o.dnd)

  const from = harness.observations.mark()
  const subscribesBefore = harness.sim.stats.subscribes
  harness.sim.dropAllConnections()
  // Changes while the link is down: only the fresh read can show them.
  harness.sim.hangup(ringing)
  harness.sim.setDndAtPhone('3010', false)
  const newCall = harness.sim.incomingCall('3020')
  await synchronised(harness, extensions, from, 15000)

  const snapshots = new Map(harness.observations.since(from).flatMap((o) => (o.kind === 'snapshot' ? [[o.endpointId, o] as const] : [])))
  t.equal(snapshots.size, PEOPLE, 'a new snapshot for every user')
  t.same(snapshots.get('3001')?.calls, [], 'the call that ended while down is gone')
  t.same(snapshots.get('3002')?.calls, [{ callId: talking, state: 'connected' }])
  t.same(snapshots.get('3003')?.calls, [{ callId: held, state: 'held' }])
  t.same(snapshots.get('3020')?.calls, [{ callId: newCall, state: 'alerting' }], 'the call that started while down is there')
  t.equal(snapshots.get('3010')?.dnd, false, 'DND switched off while down is off')
  t.equal(snapshots.get('3499')?.dnd, true, 'DND still on is on')
  t.equal(harness.sim.subscriptionCount('user'), PEOPLE, 'every user subscription is live on the PBX')
  t.equal(harness.sim.subscriptionCount('lines'), 1)
  t.equal(harness.sim.stats.subscribes - subscribesBefore, PEOPLE + 1, 'one Subscribe per user plus the user list, no repeats')
  // Measured where the PBX receives them: a loaded machine can bunch requests the adapter spaced out, so allow a
  // quarter above the rate. Without the throttle all 501 arrive within a fraction of a second.
  const peak = harness.sim.peakSubscribeRate(1000)
  t.ok(peak <= RATE * 1.25, `Subscribe requests within any second (${peak}) stay near the rate ${RATE}/s`)
})
