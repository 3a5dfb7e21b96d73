import t from 'tap'
import type { CstaEvent } from '../../gateway/src/adapters/osbiz/csta/model.js'
import { normaliseEvent, normaliseSnapshot } from '../../gateway/src/adapters/osbiz/normalise.js'

const AT = 1_700_000_000_000
/** Monitor 1 watches 201, monitor 2 watches 202. */
const monitors = new Map([['1', '201'], ['2', '202']])

function state(event: CstaEvent): string {
  const outcome = normaliseEvent(event, monitors, AT)
  if (outcome.action !== 'observe') return outcome.action
  return outcome.observation.kind === 'call' ? outcome.observation.state : outcome.observation.kind
}

t.test('a call from outside: the called device rings, answers, hangs up', async (t) => {
  const delivered: CstaEvent = {
    kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '9', deviceId: '201' },
    alertingDevice: '201', callingDevice: '+4989123456', calledDevice: '201', localConnectionInfo: 'alerting', cause: 'newCall',
  }
  t.same(normaliseEvent(delivered, monitors, AT), {
    action: 'observe', observation: { kind: 'call', endpointId: '201', callId: '9', state: 'alerting', at: AT, cause: 'newCall' },
  }, 'alerting, with the cause')
  t.equal(state({ kind: 'EstablishedEvent', monitorCrossRefId: '1', connection: { callId: '9', deviceId: '201' }, answeringDevice: '201' }), 'connected')
  t.equal(state({ kind: 'ConnectionClearedEvent', monitorCrossRefId: '1', connection: { callId: '9', deviceId: '201' }, releasingDevice: '201' }), 'cleared')
})

t.test('an internal call, seen by the caller', async (t) => {
  const caller = { callId: '4', deviceId: '201' }
  t.equal(state({ kind: 'ServiceInitiatedEvent', monitorCrossRefId: '1', connection: caller, initiatingDevice: '201', localConnectionInfo: 'initiated' }), 'dialing')
  t.equal(state({ kind: 'OriginatedEvent', monitorCrossRefId: '1', connection: caller, callingDevice: '201', calledDevice: '202', localConnectionInfo: 'connected' }), 'dialing')
  const deliveredToCallee: CstaEvent = {
    kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '4', deviceId: '202' },
    alertingDevice: '202', callingDevice: '201', calledDevice: '202', localConnectionInfo: 'connected',
  }
  t.equal(state(deliveredToCallee), 'dialing', 'ringback is dialing for the caller, whatever localConnectionInfo says')
  t.equal(state({ ...deliveredToCallee, monitorCrossRefId: '2', localConnectionInfo: 'alerting' }), 'alerting', 'the same event alerts the callee')
  t.equal(state({ kind: 'EstablishedEvent', monitorCrossRefId: '1', connection: { callId: '4', deviceId: '202' }, answeringDevice: '202', callingDevice: '201' }),
    'connected', 'the callee answered: the caller is connected')
  t.equal(state({
    kind: 'EstablishedEvent', monitorCrossRefId: '1', connection: { callId: '4', deviceId: '202' }, answeringDevice: '202', callingDevice: '201', localConnectionInfo: 'hold',
  }), 'held', 'unless the caller holds it meanwhile')
})

t.test('our own connection is recognised by deviceID or by the role device alone', async (t) => {
  t.equal(state({ kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '9', deviceId: '201' } }), 'alerting', 'deviceID only')
  t.equal(state({ kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '9' }, alertingDevice: '201' }), 'alerting', 'alertingDevice only')
  t.equal(state({ kind: 'DeliveredEvent', monitorCrossRefId: '1', connection: { callId: '9' } }), 'ignore', 'neither, and no localConnectionInfo')
})

t.test('held: only the holding device is held; the held party stays connected', async (t) => {
  const held: CstaEvent = { kind: 'HeldEvent', monitorCrossRefId: '1', connection: { callId: '4', deviceId: '201' }, holdingDevice: '201', localConnectionInfo: 'hold' }
  t.equal(state(held), 'held', 'the holder')
  t.equal(state({ ...held, monitorCrossRefId: '2', localConnectionInfo: 'connected' }), 'connected', 'the held party, per localConnectionInfo')
  const { localConnectionInfo: _omitted, ...withoutInfo } = held
  t.equal(state({ ...withoutInfo, monitorCrossRefId: '2' }), 'ignore', 'the held party without localConnectionInfo: no change')
  t.equal(state({ kind: 'RetrievedEvent', monitorCrossRefId: '1', connection: { callId: '4', deviceId: '201' }, retrievingDevice: '201' }), 'connected', 'retrieved')
})

t.test('clearing: another party leaving does not end our leg unless the switch says so', async (t) => {
  const otherLeft = { kind: 'ConnectionClearedEvent', monitorCrossRefId: '1', connection: { callId: '8', deviceId: '203' }, releasingDevice: '203' } as const
  t.equal(state({ ...otherLeft, localConnectionInfo: 'connected' }), 'connected', 'conference: we stay connected')
  t.equal(state({ ...otherLeft, localConnectionInfo: 'hold' }), 'held', 'conference we hold: still held')
  t.equal(state({ ...otherLeft, localConnectionInfo: 'null' }), 'cleared', 'two-party call cleared as a whole in one event')
  t.same(normaliseEvent(otherLeft, monitors, AT), {
    action: 'resnapshot', endpointId: '201', reason: 'ConnectionClearedEvent of another party without localConnectionInfo',
  }, 'ambiguous: read the state again instead of guessing')
  t.equal(state({ kind: 'ConnectionClearedEvent', monitorCrossRefId: '1', connection: { callId: '8', deviceId: '201' }, releasingDevice: '201' }),
    'cleared', 'the switch clears our connection too (second event)')
})

t.test('DND events are the person\'s until the adapter says otherwise', async (t) => {
  t.same(normaliseEvent({ kind: 'DoNotDisturbEvent', monitorCrossRefId: '2', device: '202', doNotDisturbOn: true }, monitors, AT), {
    action: 'observe', observation: { kind: 'dnd', endpointId: '202', dnd: true, at: AT, byCommand: false },
  })
})

t.test('events of unknown monitors are ignored', async (t) => {
  t.match(normaliseEvent({ kind: 'DoNotDisturbEvent', monitorCrossRefId: '99', doNotDisturbOn: true }, monitors, AT), { action: 'ignore' })
})

t.test('a snapshot lists live calls with our states and drops null connections', async (t) => {
  t.same(normaliseSnapshot('201', {
    kind: 'SnapshotDeviceResponse',
    calls: [
      { callId: '1', localConnectionState: 'alerting' },
      { callId: '2', localConnectionState: 'connected' },
      { callId: '3', localConnectionState: 'hold' },
      { callId: '4', localConnectionState: 'initiated' },
      { callId: '5', localConnectionState: 'null' },
      { callId: '6', localConnectionState: 'queued' },
      { callId: '7', localConnectionState: 'fail' },
    ],
  }, true, AT), {
    kind: 'snapshot', endpointId: '201', dnd: true, at: AT,
    calls: [
      { callId: '1', state: 'alerting' },
      { callId: '2', state: 'connected' },
      { callId: '3', state: 'held' },
      { callId: '4', state: 'dialing' },
      { callId: '6', state: 'alerting' },
      { callId: '7', state: 'dialing' },
    ],
  })
})
