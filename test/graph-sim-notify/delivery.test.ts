import t from 'tap'
import { constants, createDecipheriv, createHmac, privateDecrypt, timingSafeEqual } from 'node:crypto'
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose'
import { createScaledClock } from '#kernel/clock.js'
import { GraphSimulator, type NotificationEvent } from '../../cloud-relay/graph-sim/graph-simulator.js'
import { eventually } from '../helpers/eventually.js'
import { rsaEncryptionCertificate } from './fixtures/encryption-certificate.js'
import { graphCalls } from './fixtures/graph-calls.js'
import { startReceiver, type WebhookReceiver } from './fixtures/webhook-receiver.js'

// Simulator time stands still (tests advance it); retries are quick so a failed delivery is retried at once.
let frozen = Date.parse('2026-03-02T09:00:00Z')
let tokenTime = frozen
const sim = new GraphSimulator({
  clock: { now: () => frozen },
  tokenClock: { now: () => tokenTime },
  delegatedTokenLifetimeSeconds: 3600,
  subscriptions: { retryFirstDelayMs: 20, deliveryTimeoutMs: 300 },
})
const app = sim.addApp()
const alice = sim.addUser({ displayName: 'Alice', userPrincipalName: 'alice@contoso.example' })
const bob = sim.addUser({ displayName: 'Bob', userPrincipalName: 'bob@contoso.example' })
await sim.start()
const calls = graphCalls(sim)
const receiver = await startReceiver(sim)
const events: NotificationEvent[] = []
sim.on('notification', (e) => events.push(e))
t.teardown(async () => {
  await receiver.close()
  await calls.close()
  await sim.stop()
})

async function subscribe(user: string, extra: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
  const token = await calls.delegatedToken(app, user)
  const res = await calls.graph('POST', '/v1.0/subscriptions', token, {
    changeType: 'updated',
    notificationUrl: receiver.url('/notify'),
    lifecycleNotificationUrl: receiver.url('/lifecycle'),
    resource: `/communications/presences?$filter=id in ('${alice.id}','${bob.id}')`,
    expirationDateTime: new Date(sim.now() + 60 * 60_000).toISOString(),
    clientState: 'cs-1',
    ...extra,
  })
  if (res.status !== 201) throw new Error(`subscribe failed: ${JSON.stringify(res.body)}`)
  const id = String(res.body?.['id'])
  return { id, token }
}

function unsubscribe(id: string): void {
  if (sim.getSubscription(id) !== undefined) sim.removeSubscription(id)
}

function reset(r: WebhookReceiver): void {
  r.received.length = 0
  r.answers.length = 0
  events.length = 0
}

const items = (path = '/notify'): Array<Record<string, unknown>> => receiver.notifications(path).flatMap((n) => n.value)

t.test('a presence change is POSTed as a basic notification', async (t) => {
  reset(receiver)
  const sub = await subscribe(alice.id)
  t.teardown(() => unsubscribe(sub.id))
  sim.teams(alice.id).startCall()
  const [item] = await eventually(() => (items().length > 0 ? items() : undefined), 'a notification')
  t.match(item, {
    subscriptionId: sub.id,
    clientState: 'cs-1',
    changeType: 'updated',
    tenantId: sim.tenantId,
    resource: `communications/presences/${alice.id}`,
    resourceData: { '@odata.id': `users/${alice.id}/presence`, '@odata.type': '#microsoft.graph.presence', id: alice.id },
  })
  t.notOk(item !== undefined && 'encryptedContent' in item)
  await eventually(() => events.some((e) => e.outcome === 'delivered'), 'the delivered event')
  t.equal(sim.notificationStats().delivered, 1)
})

t.test('several changes noticed together share one POST', async (t) => {
  reset(receiver)
  const sub = await subscribe(alice.id)
  t.teardown(() => unsubscribe(sub.id))
  sim.teams(alice.id).startConference()
  sim.teams(bob.id).startCall()
  await eventually(() => items().length === 2, 'two notifications')
  t.equal(receiver.notifications().length, 1, 'one POST')
})

t.test('rich notifications: encrypted per the documented format, with validation tokens', async (t) => {
  reset(receiver)
  const cert = await rsaEncryptionCertificate()
  const sub = await subscribe(alice.id, {
    includeResourceData: true,
    encryptionCertificate: cert.base64Der,
    encryptionCertificateId: 'relay-cert-1',
  })
  t.teardown(() => unsubscribe(sub.id))
  sim.teams(bob.id).startPresenting()
  const [post] = await eventually(() => (receiver.notifications().length > 0 ? receiver.notifications() : undefined), 'a POST')
  const item = post?.value[0] as { encryptedContent: Record<string, string> }
  const enc = item.encryptedContent
  t.equal(enc['encryptionCertificateId'], 'relay-cert-1')
  const key = privateDecrypt({ key: cert.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' }, Buffer.from(enc['dataKey'] ?? '', 'base64'))
  t.equal(key.length, 32, 'AES-256 key')
  const data = Buffer.from(enc['data'] ?? '', 'base64')
  const signature = createHmac('sha256', key).update(data).digest()
  t.ok(timingSafeEqual(signature, Buffer.from(enc['dataSignature'] ?? '', 'base64')), 'HMAC-SHA256 over the encrypted bytes')
  const decipher = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16))
  const clear = JSON.parse(Buffer.concat([decipher.update(data), decipher.final()]).toString('utf8')) as unknown
  t.same(clear, {
    '@odata.id': `users/${bob.id}/presence`,
    '@odata.type': '#microsoft.graph.presence',
    id: bob.id,
    availability: 'DoNotDisturb',
    activity: 'Presenting',
  })
  const keySet = (await calls.jwks()) as unknown as JSONWebKeySet
  const tokens = post?.validationTokens ?? []
  t.equal(tokens.length, 1)
  const { payload } = await jwtVerify(tokens[0] ?? '', createLocalJWKSet(keySet), {
    issuer: sim.issuer,
    audience: app.clientId,
    currentDate: new Date(tokenTime),
  })
  t.equal(payload['azp'], '0bf30f3b-4a52-48df-9a82-234910c4a086')
  t.equal(payload['tid'], sim.tenantId)
})

t.test('a 500 or a slow answer is retried until a 2xx arrives in time', async (t) => {
  reset(receiver)
  const sub = await subscribe(alice.id)
  t.teardown(() => unsubscribe(sub.id))
  receiver.answers.push({ status: 500 }, { status: 202, delayMs: 600 }, { status: 200 })
  sim.teams(alice.id).setFocusing()
  await eventually(() => events.some((e) => e.kind === 'change' && e.outcome === 'delivered'), 'delivery after retries')
  const change = events.filter((e) => e.kind === 'change')
  t.same(change.map((e) => [e.outcome, e.attempt]), [['failed', 1], ['failed', 2], ['delivered', 3]])
  t.equal(change[0]?.status, 500)
  t.match(change[1]?.reason, /no answer within 300 ms/)
  t.equal(receiver.notifications().length, 3, 'the same notification was POSTed three times')
  t.same(new Set(items().map((i) => i['subscriptionId'])), new Set([sub.id]))
})

t.test('retries stop after the 4-hour window: the notification is dropped', async (t) => {
  reset(receiver)
  const sub = await subscribe(alice.id)
  t.teardown(() => unsubscribe(sub.id))
  receiver.answers.push(...Array.from({ length: 50 }, () => ({ status: 503 })))
  sim.teams(alice.id).endActivity()
  await eventually(() => events.some((e) => e.outcome === 'failed'), 'the first failure')
  frozen += 4 * 3_600_000 + 1
  tokenTime = frozen
  const dropped = await eventually(() => events.find((e) => e.outcome === 'dropped'), 'the drop')
  t.match(dropped.reason, /not delivered within/)
  t.ok(receiver.notifications().length >= 1)
  receiver.answers.length = 0
})

t.test('fading noticed by the sweep after advance() is notified', async (t) => {
  reset(receiver)
  const sub = await subscribe(alice.id)
  t.teardown(() => unsubscribe(sub.id))
  sim.teams(bob.id).endActivity()
  await eventually(() => items().length === 1, 'the Available notification')
  sim.teams(bob.id).setDnd(10 * 60_000)
  await eventually(() => items().length === 2, 'the DND notification')
  sim.advance(11 * 60_000)
  await eventually(() => items().length === 3, 'the notification for the expired DND')
  t.equal(sim.getPresence(bob.id).availability, 'Available')
})

t.test('lifecycle: reauthorizationRequired on demand and before the token expires; subscriptionRemoved; missed; silent drops', async (t) => {
  reset(receiver)
  const sub = await subscribe(alice.id)
  const lifecycle = (): unknown[] => items('/lifecycle').map((i) => i['lifecycleEvent'])

  sim.requestReauthorization(sub.id)
  await eventually(() => lifecycle().length === 1, 'reauthorizationRequired')
  t.match(items('/lifecycle')[0], { subscriptionId: sub.id, clientState: 'cs-1', tenantId: sim.tenantId, lifecycleEvent: 'reauthorizationRequired' })

  tokenTime += 56 * 60_000 // the delegated token behind the subscription has 4 minutes left
  sim.sweepSubscriptions()
  await eventually(() => lifecycle().length === 2, 'automatic reauthorizationRequired')
  sim.sweepSubscriptions()
  tokenTime += 5 * 60_000 // expired: changes are lost until the subscription is reauthorized
  sim.teams(bob.id).startCall()
  await eventually(() => events.some((e) => e.outcome === 'dropped' && e.reason === 'subscription needs reauthorization'), 'paused delivery')
  const fresh = await calls.delegatedToken(app, alice.id)
  t.equal((await calls.graph('POST', `/v1.0/subscriptions/${sub.id}/reauthorize`, fresh)).status, 204)
  sim.teams(bob.id).endActivity()
  await eventually(() => items().length === 1, 'delivery resumed')

  sim.dropNotifications(1)
  sim.missNotifications((item) => item.userId === bob.id)
  sim.teams(alice.id).startCall()
  sim.teams(bob.id).startCall()
  await eventually(() => lifecycle().includes('missed'), 'missed')
  sim.clearNotificationFaults()
  t.equal(items().length, 1, 'nothing new was delivered')
  t.equal(events.filter((e) => e.outcome === 'dropped' && e.kind === 'change').length, 3)

  sim.removeSubscription(sub.id, { notify: true })
  await eventually(() => lifecycle().includes('subscriptionRemoved'), 'subscriptionRemoved')
  t.same(lifecycle(), ['reauthorizationRequired', 'reauthorizationRequired', 'missed', 'subscriptionRemoved'])
  t.equal(sim.getSubscription(sub.id), undefined)
})

t.test('with a compressed clock, retries and expiry run on simulated time', async (t) => {
  const clock = createScaledClock(3600) // an hour per real second
  const fast = new GraphSimulator({ clock, tokenClock: { now: () => Date.now() } })
  const fastApp = fast.addApp()
  const carol = fast.addUser({ displayName: 'Carol', userPrincipalName: 'carol@contoso.example' })
  await fast.start()
  const fastCalls = graphCalls(fast)
  const r = await startReceiver(fast)
  t.teardown(async () => {
    await r.close()
    await fastCalls.close()
    await fast.stop()
  })
  const seen: NotificationEvent[] = []
  fast.on('notification', (e) => seen.push(e))
  const token = await fastCalls.delegatedToken(fastApp, carol.id)
  const res = await fastCalls.graph('POST', '/v1.0/subscriptions', token, {
    changeType: 'updated',
    notificationUrl: r.url('/notify'),
    resource: `/communications/presences/${carol.id}`,
    expirationDateTime: new Date(clock.now() + 50 * 60_000).toISOString(),
  })
  t.equal(res.status, 201)
  const id = String(res.body?.['id'])
  r.answers.push({ status: 500 })
  fast.teams(carol.id).startCall()
  // The first retry waits 10 simulated seconds: a few real milliseconds.
  await eventually(() => seen.some((e) => e.outcome === 'delivered'), 'delivery after a retry on the scaled clock')
  t.same(seen.map((e) => e.outcome), ['failed', 'delivered'])
  await eventually(() => fast.getSubscription(id) === undefined, 'expiry after ~50 simulated minutes', 5_000)
})
