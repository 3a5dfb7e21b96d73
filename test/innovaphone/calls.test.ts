import t from 'tap'
import type { PbxObservation } from '../../gateway/src/adapters/types.js'
import type { SimUser } from '../../gateway/src/adapters/innovaphone/simulator/innovaphone-simulator.js'
import { startAdapter, synchronised, type Harness } from './fixtures/harness.js'

type CallObservation = Extract<PbxObservation, { kind: 'call' }>

function callStates(harness: Harness, from: number, endpointId: string): string[] {
  return harness.observations.since(from).filter((o): o is CallObservation => o.kind === 'call' && o.endpointId === endpointId).map((o) => o.state)
}

const waitCall = (harness: Harness, from: number, endpointId: string, state: string) =>
  harness.observations.waitFor((o) => o.kind === 'call' && o.endpointId === endpointId && o.state === state, { from, what: `${endpointId} ${state}` })

t.test('an internal call: the caller dials (ringback), the callee rings, both connect; hold on one side only', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ['201', '202', '203'])
  const from = harness.observations.mark()
  const call = harness.sim.outgoingCall('201', '202')
  await waitCall(harness, from, '202', 'alerting')
  harness.sim.answer(call)
  await waitCall(harness, from, '201', 'connected')
  await waitCall(harness, from, '202', 'connected')
  harness.sim.hold(call, '202')
  await waitCall(harness, from, '202', 'held')
  harness.sim.hangup(call, '201')
  await waitCall(harness, from, '201', 'cleared')
  await waitCall(harness, from, '202', 'cleared')
  t.same(callStates(harness, from, '201'), ['dialing', 'connected', 'cleared'], 'caller: 0x01/0x03/0x04 are dialing, never alerting; held by the peer stays connected')
  t.same(callStates(harness, from, '202'), ['alerting', 'connected', 'held', 'cleared'], 'callee: 0x81/0x84 alerting, 0x85 connected, 0x185 held')
  const cleared = harness.observations.since(from).find((o): o is CallObservation => o.kind === 'call' && o.state === 'cleared')
  t.equal(cleared?.cause, 'Normal call clearing', 'the Q.850 cause text comes along')
})

t.test('an outgoing external call is busy from the first digit', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ['201', '202', '203'])
  const from = harness.observations.mark()
  const call = harness.sim.outgoingCall('203', '+4930111222')
  await waitCall(harness, from, '203', 'dialing')
  harness.sim.answer(call)
  await waitCall(harness, from, '203', 'connected')
  harness.sim.hangup(call)
  await waitCall(harness, from, '203', 'cleared')
  t.same(callStates(harness, from, '203'), ['dialing', 'connected', 'cleared'])
})

t.test('a call in progress at connect time is in the first snapshot, with DND', async (t) => {
  const harness = await startAdapter(t, { start: false })
  const ringing = harness.sim.incomingCall('201')
  const talking = harness.sim.incomingCall('202')
  harness.sim.answer(talking)
  harness.sim.setDndAtPhone('203', true)
  await harness.adapter.start()
  await synchronised(harness, ['201', '202', '203'])
  const snapshot = (id: string) => harness.observations.items.find((o) => o.kind === 'snapshot' && o.endpointId === id)
  t.match(snapshot('201'), { calls: [{ callId: ringing, state: 'alerting' }], dnd: false })
  t.match(snapshot('202'), { calls: [{ callId: talking, state: 'connected' }], dnd: false })
  t.match(snapshot('203'), { calls: [], dnd: true })
})

t.test('presence other than dnd, and calendar DND, are not DND', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ['201', '202', '203'])
  const from = harness.observations.mark()
  harness.sim.setActivity('201', 'away')
  harness.sim.setActivity('201', 'dnd', 'calendar:')
  harness.sim.setDndAtPhone('202', true)
  await harness.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === '202', { from, what: 'barrier' })
  t.notOk(harness.observations.since(from).some((o) => o.kind === 'dnd' && o.endpointId === '201'), 'no DND change for 201')
})

t.test('our DND carries the configured note, and clearing it clears the note', async (t) => {
  const harness = await startAdapter(t, { config: { dndNote: 'In Teams' } })
  await synchronised(harness, ['201', '202', '203'])
  await harness.adapter.setDnd('203', true)
  t.same(harness.sim.getPresence('203'), { activity: 'dnd', note: 'In Teams' }, 'addressed by SIP name (carol@contoso.example)')
  await harness.adapter.setDnd('203', false)
  t.same(harness.sim.getPresence('203'), { activity: '', note: '' })
})

t.test('after a drop, 500 people are restored with the right calls and DND', async (t) => {
  const users: SimUser[] = Array.from({ length: 500 }, (_, i) => ({ cn: `Person ${i}`, e164: String(1000 + i), h323: `p${i}`, emails: [`p${i}@contoso.example`] }))
  const all = users.map((user) => user.e164)
  const harness = await startAdapter(t, { sim: { users } })
  await synchronised(harness, all, 0, 15000)
  // State before the drop: every 10th rings, every 7th talks, every 5th has DND.
  for (let i = 0; i < 500; i += 10) harness.sim.incomingCall(String(1000 + i))
  const talking: string[] = []
  for (let i = 3; i < 500; i += 7) {
    const call = harness.sim.incomingCall(String(1000 + i))
    harness.sim.answer(call)
    talking.push(call)
  }
  for (let i = 0; i < 500; i += 5) harness.sim.setDndAtPhone(String(1000 + i), true)
  const from = harness.observations.mark()
  harness.sim.dropAllConnections()
  await harness.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from, what: 'offline' })
  // Changes while the gateway is cut off: half the talkers hang up, some DND is cleared.
  for (const call of talking.filter((_, index) => index % 2 === 0)) harness.sim.hangup(call)
  for (let i = 0; i < 500; i += 15) harness.sim.setDndAtPhone(String(1000 + i), false)
  await synchronised(harness, all, from, 15000)
  const expected = new Map(all.map((e164) => [e164, { calls: [] as Array<{ callId: string; state: string }>, dnd: harness.sim.getDnd(e164) }]))
  for (const call of harness.sim.calls()) {
    for (const leg of call.legs) expected.get(leg.e164)?.calls.push({ callId: call.callId, state: (leg.state & 0x0f) === 5 ? 'connected' : 'alerting' })
  }
  let wrong = 0
  for (const e164 of all) {
    const snapshot = harness.observations.since(from).find((o) => o.kind === 'snapshot' && o.endpointId === e164)
    if (snapshot === undefined || snapshot.kind !== 'snapshot' || JSON.stringify({ calls: snapshot.calls, dnd: snapshot.dnd }) !== JSON.stringify(expected.get(e164))) wrong++
  }
  t.equal(wrong, 0, 'every snapshot after the reconnect matches the PBX')
  t.equal(harness.sim.monitorCount(), 500, 'every person is monitored again on the new connection')
  t.equal(harness.sim.presenceSubscriptionCount(), 500, 'and subscribed to presence')
})
