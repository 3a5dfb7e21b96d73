import t from 'tap'
import { encryptResourceData, parseEncryptionCertificate } from '../../cloud-relay/graph-sim/notification-crypto.js'
import { eventually } from '../helpers/eventually.js'
import { GATEWAY, observed, startNotifyHarness, TENANT } from './fixtures/notify-harness.js'

// Real clock; polling every 60 s so a change seen within the test came by notification.
const h = await startNotifyHarness({ people: 4, pollIntervalMs: 60_000 })
t.teardown(() => h.close())
await h.startRelay()

t.test('device code sign-in through the admin API, then a subscription and notifications reach the engine', async (t) => {
  const accountId = await h.signIn(h.sync[0]!)
  const list = await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)
  t.equal(list.status, 200)
  const body = list.body as { accounts: Array<{ id: string; username: string; state: string }>; shards: Array<{ members: number; subscriptionId: string | null }>; polled: number }
  t.match(body.accounts, [{ id: accountId, username: 'sync0@contoso.example', state: 'ok' }])
  await eventually(() => h.sim.getSubscriptions().length === 1, 'a subscription at the simulator')
  const sub = h.sim.getSubscriptions()[0]!
  t.equal(sub.includeResourceData, true)
  t.equal(sub.userIds.length, 4, 'one shard with all four people')
  t.ok(sub.lifecycleNotificationUrl?.endsWith('/graph/lifecycle'))
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 4, 'the relay to count them as subscribed')

  // The read that follows every create (a gap) is done before anything changes.
  await h.relay.observation.idle()
  const reads = h.counters.get('presence.read.requests')
  const person = h.users[1]!
  h.sim.teams(person.id).startConference()
  await eventually(() => observed(h.relay, person.id) === 'Busy/InAConferenceCall', 'the conference to reach the engine')
  h.sim.teams(person.id).endActivity()
  await eventually(() => observed(h.relay, person.id) === 'Available/Available', 'the end of the conference to reach the engine')
  t.ok(h.counters.get('notify.accepted') >= 2, 'both by notification', { counters: h.counters.snapshot() })
  t.equal(h.counters.get('presence.read.requests'), reads, 'no presence read in between')
  t.equal(h.counters.get('notify.rejected'), 0)

  const list2 = (await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)).body as typeof body
  t.equal(list2.shards.length, 1)
  t.equal(list2.polled, 0, 'nobody is polled while the subscription works')
})

function liveSubscription() {
  const subs = h.sim.getSubscriptions()
  if (subs.length !== 1) throw new Error(`expected one subscription, found ${subs.length}`)
  return subs[0]!
}

t.test('reauthorizationRequired: one PATCH renews and reauthorizes, then the shard is read once', async (t) => {
  const sub = liveSubscription()
  const reads = h.counters.get('presence.read.requests')
  const actions: string[] = []
  const onSub = (e: { action: string }) => actions.push(e.action)
  h.sim.on('subscription', onSub)
  t.teardown(() => h.sim.off('subscription', onSub))
  h.sim.requestReauthorization(sub.id)
  await eventually(() => h.counters.get('subscriptions.reauthorized') === 1, 'the relay to reauthorize')
  await h.relay.observation.idle()
  t.same(actions, ['renewed'], 'a single PATCH (renewal), no create')
  t.equal(h.sim.requestCount('reauthorizeSubscription'), 0, 'no /reauthorize next to the PATCH')
  t.equal(liveSubscription().id, sub.id, 'the same subscription')
  t.ok(h.counters.get('presence.read.requests') > reads, 'the gap is reconciled')
})

t.test('subscriptionRemoved: the relay creates a new subscription and reads the shard', async (t) => {
  const sub = liveSubscription()
  h.sim.removeSubscription(sub.id, { notify: true })
  await eventually(() => h.sim.getSubscriptions().length === 1 && h.sim.getSubscriptions()[0]!.id !== sub.id, 'a new subscription')
  t.equal(h.counters.get('subscriptions.removed'), 1)
  const person = h.users[2]!
  await h.relay.observation.idle()
  h.sim.teams(person.id).startCall()
  await eventually(() => observed(h.relay, person.id) === 'Busy/InACall', 'notifications on the new subscription')
  h.sim.teams(person.id).endActivity()
  await eventually(() => observed(h.relay, person.id) === 'Available/Available', 'the call to end')
})

t.test('missed: a lost notification is made good by reading the shard', async (t) => {
  await h.relay.observation.idle()
  const person = h.users[3]!
  const reads = h.counters.get('presence.read.requests')
  h.sim.missNotifications(1)
  h.sim.teams(person.id).startPresenting()
  await eventually(() => observed(h.relay, person.id) === 'DoNotDisturb/Presenting', 'the presentation to be seen after missed')
  t.equal(h.counters.get('notify.lifecycle.missed'), 1)
  t.ok(h.counters.get('presence.read.requests') > reads, 'seen by a read, since the notification was lost')
  h.sim.teams(person.id).endActivity()
  await eventually(() => observed(h.relay, person.id) === 'Available/Available', 'the presentation to end')
})

t.test('tampered and forged notifications are rejected, counted, and change nothing', async (t) => {
  await h.relay.observation.idle()
  const sub = liveSubscription()
  const person = h.users[0]!
  const certificate = parseEncryptionCertificate(sub.encryptionCertificate ?? '', sub.encryptionCertificateId ?? '')
  if (typeof certificate === 'string') throw new Error(certificate)
  const item = (presence: { availability: string; activity: string }, over: Record<string, unknown> = {}) => ({
    subscriptionId: sub.id,
    clientState: sub.clientState,
    changeType: 'updated',
    tenantId: h.sim.tenantId,
    resource: `communications/presences('${person.id}')`,
    resourceData: { '@odata.id': `communications/presences('${person.id}')`, '@odata.type': '#Microsoft.Graph.presence', id: person.id },
    encryptedContent: encryptResourceData({ id: person.id, ...presence }, certificate),
    ...over,
  })
  // Genuine validation tokens, taken from a POST Graph sent: the items below fail on their own faults only.
  const validationTokens = h.lastNotification()?.validationTokens
  t.ok(Array.isArray(validationTokens) && validationTokens.length > 0, 'Graph sent validation tokens')
  const post = async (value: unknown[], tokens: unknown = validationTokens) => {
    const r = await fetch(`http://127.0.0.1:${h.relay.httpPort}/graph/notifications`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ value, validationTokens: tokens }) })
    t.equal(r.status, 202, 'Graph always gets 202; the checks run after the answer')
    await h.relay.observation.idle()
  }
  const before = observed(h.relay, person.id)
  t.not(before, 'DoNotDisturb/Presenting')
  const dnd = { availability: 'DoNotDisturb', activity: 'Presenting' }
  const flipped = item(dnd)
  const data = Buffer.from(flipped.encryptedContent.data, 'base64')
  data[5] = data[5]! ^ 0x01
  flipped.encryptedContent.data = data.toString('base64')
  const wrongHmac = item(dnd)
  wrongHmac.encryptedContent.dataSignature = Buffer.alloc(32, 7).toString('base64')
  await post([flipped, wrongHmac, item(dnd, { clientState: 'guessed' }), item(dnd, { subscriptionId: '0f0f0f0f-0000-4000-8000-000000000000' }), item(dnd, { clientState: undefined })])
  t.equal(h.counters.get('notify.rejected.bad-signature'), 2, 'flipped ciphertext byte and wrong HMAC')
  t.equal(h.counters.get('notify.rejected.bad-client-state'), 2, 'wrong or missing clientState')
  t.equal(h.counters.get('notify.rejected.unknown-subscription'), 1)
  t.equal(h.counters.get('notify.rejected'), 5)
  // Right subscription, clientState and encryption, but validation tokens that are not Graph's.
  const [header, payload] = String((validationTokens as string[])[0]).split('.')
  await post([item(dnd)], [`${header}.${payload}.${Buffer.alloc(256, 1).toString('base64url')}`])
  await post([item(dnd)], [])
  t.equal(h.counters.get('notify.rejected.bad-validation-token'), 2, 'a forged signature and no tokens')
  t.equal(h.counters.get('notify.rejected'), 7)
  t.equal(observed(h.relay, person.id), before, 'nothing rejected reached the engine')

  // The same path with an intact item is accepted: the rejections above are the checks, not the plumbing.
  await post([item({ availability: 'Busy', activity: 'InACall' })])
  t.equal(observed(h.relay, person.id), 'Busy/InACall')
  await post([item({ availability: 'Available', activity: 'Available' })])
})

t.test('a new person re-plans the shard: the subscription is replaced by one that covers them', async (t) => {
  await h.relay.observation.idle()
  const old = liveSubscription()
  const newcomer = h.sim.addUser({ displayName: 'Newcomer', userPrincipalName: 'newcomer@contoso.example' })
  await h.relay.engine.onDirectory(GATEWAY, { connectorId: 'pbx2', entries: [{ endpointId: '900', name: 'Newcomer', email: newcomer.userPrincipalName }] })
  await eventually(() => h.sim.getSubscriptions().length === 1 && h.sim.getSubscriptions()[0]!.userIds.includes(newcomer.id), 'a subscription covering the newcomer')
  t.not(liveSubscription().id, old.id, 'Graph cannot change a resource: a new subscription')
  t.equal(liveSubscription().userIds.length, 5)
  await h.relay.observation.idle()
  h.sim.teams(newcomer.id).startConference()
  await eventually(() => observed(h.relay, newcomer.id) === 'Busy/InAConferenceCall', 'the newcomer\'s notifications')
})
