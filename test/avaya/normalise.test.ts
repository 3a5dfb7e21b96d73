import t from 'tap'
import { CALL_STATE_MAPPING, applyNotifyUser, directoryEntry, legStateOf, lostCall } from '../../gateway/src/adapters/avaya-ipo/normalise.js'
import { CALL_STATE_NAMES, CallDirection, CallState } from '../../gateway/src/adapters/avaya-ipo/mtcti3/model.js'
import { decodeFrame, encodeFrame, formatGuid, parseGuid } from '../../gateway/src/adapters/avaya-ipo/mtcti3/codec.js'

/** Every CallInfo.State number, its name and what the user's leg becomes (research A.5, table [I]). */
const EXPECTED: Array<[number, string, string]> = [
  [0, 'UNKNOWN', 'ignore'],
  [1, 'DIALTONE', 'dialing'],
  [2, 'DIALLING', 'dialing'],
  [3, 'DIALLED', 'dialing'],
  [4, 'RINGING', 'alerting'],
  [5, 'RINGBACK', 'dialing'],
  [6, 'CONNECTED', 'connected'],
  [7, 'ONHOLD', 'held'],
  [8, 'ONHOLDPENDTRANSFER', 'held'],
  [9, 'ONHOLDPENDCONF', 'held'],
  [10, 'DISCONNECTED', 'cleared'],
  [11, 'BUSY', 'cleared'],
  [12, 'FAILED', 'cleared'],
  [13, 'WAITINGFORACCT', 'dialing'],
  [14, 'WAITINGFORAUTH', 'dialing'],
  [15, 'WAITINGFORLINE', 'dialing'],
  [16, 'REMINDER', 'alerting'],
  [17, 'AFTERCALLWORK', 'cleared'],
  [18, 'RINGINGDIVERT', 'alerting'],
  [19, 'RINGINGVOICEMAIL', 'cleared'],
  [20, 'ANSWEREDBYVOICEMAIL', 'cleared'],
  [21, 'LEAVINGVOICEMAILMESSAGE', 'cleared'],
  [22, 'QUEUEING', 'alerting'],
  [23, 'RETARGETING', 'ignore'],
]

t.test('every CallInfo state has a mapping, and it is the documented one', async (t) => {
  t.equal(CALL_STATE_NAMES.size, 24, '24 named states')
  t.equal(Object.keys(CALL_STATE_MAPPING).length, 24, 'one mapping per state')
  for (const [value, name, leg] of EXPECTED) {
    t.equal(CALL_STATE_NAMES.get(value), name, `${value} is ${name}`)
    const outcome = legStateOf({ callid: 7, state: value, direction: CallDirection.INBOUND })
    if (leg === 'ignore') t.match(outcome, { action: 'ignore', callId: '7', reason: new RegExp(name) }, `${name} leaves the leg alone`)
    else t.match(outcome, { action: 'state', callId: '7', state: leg, stateName: name }, `${name} → ${leg}`)
  }
})

t.test('unknown state numbers are ignored with a reason, never guessed', async (t) => {
  for (const value of [24, 25, 99, 1000, -1]) {
    t.match(legStateOf({ callid: 3, state: value }), { action: 'ignore', reason: `unknown CallInfo state ${value}` })
  }
  t.match(legStateOf({ callid: 3 }), { action: 'ignore', reason: /UNKNOWN/ }, 'a missing state is UNKNOWN (proto3 default)')
  t.match(legStateOf({ state: CallState.CONNECTED }), { action: 'state', callId: '0' }, 'a missing callid is call 0')
})

t.test('RINGING on an outbound call is the user calling out, not ringing', async (t) => {
  t.match(legStateOf({ callid: 1, state: CallState.RINGING, direction: CallDirection.OUTBOUND }), { state: 'dialing', stateName: 'RINGING/OUTBOUND' })
  t.match(legStateOf({ callid: 1, state: CallState.RINGING }), { state: 'alerting' }, 'no direction: ringing')
})

t.test('survives the wire: unknown enum numbers decode as numbers', async (t) => {
  for (const value of [...EXPECTED.map(([v]) => v), 24, 77]) {
    const decoded = decodeFrame(encodeFrame({ notify: { subscribe_id: 1000, notify_id: 1, callcontrol: { callinfo: [{ callid: 5, state: value }] } } }))
    t.ok(decoded.ok, `state ${value} decodes`)
    const info = decoded.ok ? decoded.message.notify?.callcontrol?.callinfo?.[0] : undefined
    t.equal(info?.state ?? 0, value)
  }
})

t.test('CallLost gives the cause from the description, else the reason number', async (t) => {
  t.same(lostCall({ callid: 4, reason: 2, description: 'normal clearing' }), { callId: '4', cause: 'normal clearing' })
  t.same(lostCall({ callid: 4, reason: 2 }), { callId: '4', cause: 'reason 2' })
  t.same(lostCall({ callid: 4 }), { callId: '4', cause: undefined })
})

t.test('NotifyUser: with the extension it is the full state, without it a partial update', async (t) => {
  const first = applyNotifyUser(undefined, { extn: '201', name: 'Alice', email: 'alice@contoso.example', dnd: true })
  t.match(first, { full: true, data: { extension: '201', email: 'alice@contoso.example', dnd: true } })
  const off = applyNotifyUser(first.data, { extn: '201', name: 'Alice', email: 'alice@contoso.example' })
  t.match(off, { full: true, data: { dnd: false } }, 'a full NotifyUser without dnd means DND off (proto3 omits false)')
  const partial = applyNotifyUser(first.data, { fullname: 'Alice Adams' })
  t.match(partial, { full: false, data: { dnd: true, email: 'alice@contoso.example', fullName: 'Alice Adams' } }, 'a partial one keeps what it does not carry')
  const noEmail = applyNotifyUser(first.data, { extn: '201', name: 'Alice' })
  t.equal(noEmail.data.email, undefined, 'a full one without e-mail clears it')
})

t.test('directory entries prefer the full name and drop e-mails that are not addresses', async (t) => {
  const data = { extension: '201', name: 'Alice', fullName: 'Alice Adams', email: 'alice@contoso.example', dnd: false }
  t.same(directoryEntry('201', 'Alice', data), { endpointId: '201', name: 'Alice Adams', email: 'alice@contoso.example' })
  t.same(directoryEntry('201', 'Alice', { ...data, fullName: undefined, email: 'not an address' }), { endpointId: '201', name: 'Alice' })
  t.same(directoryEntry('203', undefined, undefined), { endpointId: '203', name: '203' })
})

t.test('GUIDs: 16 bytes ↔ 8-4-4-4-12 hex', async (t) => {
  const text = '00112233-4455-6677-8899-aabbccddeeff'
  t.equal(formatGuid(parseGuid(text)), text)
  t.equal(formatGuid(new Uint8Array(15)), undefined, 'not 16 bytes: no GUID')
  t.throws(() => parseGuid('nope'))
})
