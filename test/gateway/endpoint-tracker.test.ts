import t from 'tap'
import { aggregateCallState, EndpointTracker } from '../../gateway/src/core/endpoint-tracker.js'

t.test('aggregation over calls (DESIGN §5)', async (t) => {
  t.equal(aggregateCallState([]), 'idle')
  t.equal(aggregateCallState(['alerting']), 'ringing')
  t.equal(aggregateCallState(['alerting', 'alerting']), 'ringing')
  t.equal(aggregateCallState(['dialing']), 'busy', 'dialling counts as busy')
  t.equal(aggregateCallState(['connected', 'held']), 'busy', 'any connected call makes it busy')
  t.equal(aggregateCallState(['held']), 'held')
  t.equal(aggregateCallState(['held', 'held']), 'held')
  t.equal(aggregateCallState(['held', 'alerting']), 'held', 'a waiting call while another is held is not just ringing')
})

t.test('call lifecycle publishes only visible changes', async (t) => {
  const tracker = new EndpointTracker()
  t.match(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '1', state: 'alerting', at: 1 }), { state: 'ringing', calls: 1, cause: 'call.alerting' })
  t.match(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '1', state: 'connected', at: 2 }), { state: 'busy', calls: 1 })
  t.equal(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '1', state: 'connected', at: 3 }), undefined, 'a repeated event changes nothing')
  t.match(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '2', state: 'alerting', at: 4 }), { state: 'busy', calls: 2 }, 'call count is visible')
  t.match(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '1', state: 'cleared', at: 5 }), { state: 'ringing', calls: 1 })
  t.match(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '2', state: 'cleared', at: 6 }), { state: 'idle', calls: 0 })
  t.equal(tracker.apply('c', { kind: 'call', endpointId: '201', callId: '9', state: 'cleared', at: 7 }), undefined, 'clearing an unknown call changes nothing')
})

t.test('DND ownership', async (t) => {
  const tracker = new EndpointTracker()
  t.match(tracker.apply('c', { kind: 'dnd', endpointId: '202', dnd: true, byCommand: true, at: 1 }), { dnd: true, dndOwner: 'gateway', cause: 'dnd.command' })
  t.same(tracker.ownedDnd(), ['c/202'])
  t.equal(tracker.apply('c', { kind: 'dnd', endpointId: '202', dnd: true, byCommand: false, at: 2 }), undefined, 'the PBX event that follows our command keeps our ownership')
  t.match(tracker.apply('c', { kind: 'dnd', endpointId: '202', dnd: false, byCommand: false, at: 3 }), { dnd: false, dndOwner: null, cause: 'dnd.user' }, 'the person switching our DND off is visible as dnd.user')
  t.same(tracker.ownedDnd(), [])

  t.match(tracker.apply('c', { kind: 'dnd', endpointId: '203', dnd: true, byCommand: false, at: 4 }), { dnd: true, dndOwner: 'user' })
  t.equal(tracker.apply('c', { kind: 'dnd', endpointId: '203', dnd: true, byCommand: true, at: 5 }), undefined, 'confirming a DND the person set keeps it theirs')
  t.same(tracker.ownedDnd(), [], 'and we do not own it')
  t.match(tracker.get('c', '203'), { dndOwner: 'user' })
})

t.test('ownership survives a restart through the persisted owned set', async (t) => {
  const before = new EndpointTracker()
  before.apply('c', { kind: 'dnd', endpointId: '202', dnd: true, byCommand: true, at: 1 })
  const after = new EndpointTracker(before.ownedDnd())
  t.match(after.apply('c', { kind: 'snapshot', endpointId: '202', calls: [], dnd: true, at: 2 }), { dnd: true, dndOwner: 'gateway', cause: 'snapshot' })
  t.match(after.apply('c', { kind: 'snapshot', endpointId: '203', calls: [{ callId: 'x', state: 'connected' }], dnd: true, at: 2 }), { state: 'busy', dnd: true, dndOwner: 'user' })
  t.match(after.apply('c', { kind: 'snapshot', endpointId: '202', calls: [], dnd: false, at: 3 }), { dnd: false, dndOwner: null })
  t.same(after.ownedDnd(), [], 'a snapshot without DND drops ownership')
})

t.test('a claim made before the command makes the DND ours even if the answer never arrives', async (t) => {
  const tracker = new EndpointTracker()
  tracker.apply('c', { kind: 'snapshot', endpointId: '202', calls: [], dnd: false, at: 1 })
  t.equal(tracker.claimDnd('c', '202'), true)
  t.same(tracker.ownedDnd(), ['c/202'], 'the claim is in the persisted set before anything is sent')
  // The PBX event overtakes the answer to our command.
  t.match(tracker.apply('c', { kind: 'dnd', endpointId: '202', dnd: true, byCommand: false, at: 2 }), { dnd: true, dndOwner: 'gateway' })
  // After a crash, the snapshot still knows.
  const restarted = new EndpointTracker(tracker.ownedDnd())
  t.match(restarted.apply('c', { kind: 'snapshot', endpointId: '202', calls: [], dnd: true, at: 3 }), { dndOwner: 'gateway' })

  const other = new EndpointTracker()
  other.apply('c', { kind: 'dnd', endpointId: '203', dnd: true, byCommand: false, at: 1 })
  t.equal(other.claimDnd('c', '203'), false, "nothing is claimed over the person's own DND")
  t.same(other.ownedDnd(), [])
  other.apply('c', { kind: 'snapshot', endpointId: '204', calls: [], dnd: false, at: 1 })
  other.claimDnd('c', '204')
  other.releaseClaim('c', '204')
  t.same(other.ownedDnd(), [], 'a failed command drops its claim')
})
