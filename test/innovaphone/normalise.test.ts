import t from 'tap'
import { callInfoOutcome, dndFromPresence, displayName, primaryEmail } from '../../gateway/src/adapters/innovaphone/normalise.js'

t.test('the PBX-centric direction bit: 0x84 rings at the phone, 0x85 is answered', async (t) => {
  t.same(callInfoOutcome(0x84, 'r-alert'), { action: 'state', state: 'alerting' }, '0x84 incoming call ringing')
  t.same(callInfoOutcome(0x85, 'r-conn'), { action: 'state', state: 'connected' }, '0x85 incoming call connected')
  t.same(callInfoOutcome(0x81, 'x-setup'), { action: 'state', state: 'alerting' }, '0x81 offered to the phone')
  t.same(callInfoOutcome(0x04, 'x-alert'), { action: 'state', state: 'dialing' }, '0x04: the person called out and hears ringback')
  t.same(callInfoOutcome(0x01, 'r-setup'), { action: 'state', state: 'dialing' }, '0x01: the person dials')
  t.same(callInfoOutcome(0x05, 'x-conn'), { action: 'state', state: 'connected' }, '0x05 outgoing call connected')
})

t.test('hold bits', async (t) => {
  t.same(callInfoOutcome(0x185, 'r-hold'), { action: 'state', state: 'held' }, '0x100: the person holds')
  t.same(callInfoOutcome(0x105, 'r-hold'), { action: 'state', state: 'held' }, 'either direction')
  t.same(callInfoOutcome(0x285, 'x-hold'), { action: 'state', state: 'connected' }, '0x200: held by the peer, still in the call')
  t.same(callInfoOutcome(0x88, 'x-park'), { action: 'state', state: 'held' }, 'parked')
})

t.test('del ends every call whatever its state; disconnects wait for it', async (t) => {
  for (const state of [undefined, 0x85, 0x87, 0x185, 0x04]) t.same(callInfoOutcome(state, 'del'), { action: 'state', state: 'cleared' })
  t.match(callInfoOutcome(0x86, 'x-disc'), { action: 'ignore' })
  t.match(callInfoOutcome(0x07, 'r-rel'), { action: 'ignore' })
  t.match(callInfoOutcome(0x8f, 'x-what'), { action: 'ignore', reason: /unknown call state 0x8f/ })
  t.match(callInfoOutcome(undefined, 'x-alert'), { action: 'ignore' })
})

t.test('primary e-mail: the h323 name when h323-email is set, else the first of emails', async (t) => {
  t.equal(primaryEmail({ h323: 'carol@contoso.example', 'h323-email': true, emails: [{ email: 'other@contoso.example' }] }), 'carol@contoso.example')
  t.equal(primaryEmail({ h323: 'bob', emails: [{ email: 'bob@contoso.example' }, { email: 'robert@contoso.example' }] }), 'bob@contoso.example')
  t.equal(primaryEmail({ h323: 'bob', emails: [{}, { email: 'second@contoso.example' }] }), 'second@contoso.example')
  t.equal(primaryEmail({ h323: 'bob' }), undefined)
  t.equal(primaryEmail({ h323: 'not an address', 'h323-email': true }), undefined, 'something that is not an address is left out')
})

t.test('DND is the tel: item with activity dnd', async (t) => {
  t.equal(dndFromPresence([{ contact: 'tel:', activity: 'dnd' }]), true)
  t.equal(dndFromPresence([{ contact: 'im:', activity: '' }, { contact: 'tel:', activity: 'dnd' }]), true, 'anywhere in the list')
  t.equal(dndFromPresence([{ contact: 'tel:', activity: 'away' }]), false)
  t.equal(dndFromPresence([{ contact: 'calendar:', activity: 'dnd' }]), false, 'a calendar entry is not the person pressing DND')
  t.equal(dndFromPresence([]), false)
})

t.test('display name', async (t) => {
  t.equal(displayName({ dn: 'Alice A.', cn: 'Alice Adams' }), 'Alice A.')
  t.equal(displayName({ dn: '', cn: 'Alice Adams' }), 'Alice Adams')
  t.equal(displayName({ h323: 'alice' }), 'alice')
})
