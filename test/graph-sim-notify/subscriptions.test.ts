import t from 'tap'
import { randomUUID } from 'node:crypto'
import { GraphSimulator } from '../../cloud-relay/graph-sim/graph-simulator.js'
import { graphCalls } from './fixtures/graph-calls.js'
import { startReceiver } from './fixtures/webhook-receiver.js'

const frozen = Date.parse('2026-03-02T09:00:00Z')
const sim = new GraphSimulator({ clock: { now: () => frozen } })
const app = sim.addApp()
const alice = sim.addUser({ displayName: 'Alice', userPrincipalName: 'alice@contoso.example' })
const bob = sim.addUser({ displayName: 'Bob', userPrincipalName: 'bob@contoso.example' })
await sim.start()
const calls = graphCalls(sim)
const receiver = await startReceiver(sim)
t.teardown(async () => {
  await receiver.close()
  await calls.close()
  await sim.stop()
})
const aliceToken = await calls.delegatedToken(app, alice.id)
const bobToken = await calls.delegatedToken(app, bob.id)

const minutes = (m: number): string => new Date(sim.now() + m * 60_000).toISOString()
const request = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  changeType: 'updated',
  notificationUrl: receiver.url('/notify'),
  lifecycleNotificationUrl: receiver.url('/lifecycle'),
  resource: `/communications/presences?$filter=id in ('${alice.id}','${bob.id}')`,
  expirationDateTime: minutes(59),
  clientState: 'secret-state',
  ...overrides,
})

t.test('an app-only token gets 403 for a presence subscription (delegated only)', async (t) => {
  const res = await calls.graph('POST', '/v1.0/subscriptions', await calls.appToken(app), request())
  t.equal(res.status, 403)
  t.match(res.body, { error: { code: 'Forbidden', message: /not authorized for this user or application/ } })
  t.same(sim.getSubscriptions(), [])
})

t.test('a good handshake on both URLs gives 201; one per app and user, else 409', async (t) => {
  const validationsBefore = sim.notificationStats().validations
  const created = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request())
  t.equal(created.status, 201)
  const id = String(created.body?.['id'])
  t.match(created.body, { changeType: 'updated', clientState: 'secret-state', applicationId: app.clientId, creatorId: alice.id })
  t.equal(sim.notificationStats().validations - validationsBefore, 2, 'notification and lifecycle URLs were both validated')
  const validation = receiver.received.find((r) => r.query.has('validationToken'))
  t.match(validation?.contentType, /^text\/plain/)
  t.same(sim.getSubscription(id)?.userIds, [alice.id, bob.id])

  const again = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request({ resource: `/communications/presences/${bob.id}` }))
  t.equal(again.status, 409)
  t.match(again.body, { error: { message: `Subscription Id ${id} already exists for the requested combination` } })

  const other = await calls.graph('POST', '/v1.0/subscriptions', bobToken, request({ resource: `/communications/presences/${alice.id}` }))
  t.equal(other.status, 201, 'another delegated user of the same app may hold its own')

  const list = await calls.graph('GET', '/v1.0/subscriptions', aliceToken)
  t.same((list.body?.['value'] as Array<{ id: string }>).map((s) => s.id), [id], 'a delegated caller lists its own')
  t.equal((await calls.graph('GET', `/v1.0/subscriptions/${id}`, aliceToken)).status, 200)
  t.equal((await calls.graph('GET', `/v1.0/subscriptions/${id}`, bobToken)).status, 403)

  const renewed = await calls.graph('PATCH', `/v1.0/subscriptions/${id}`, aliceToken, { expirationDateTime: minutes(60) })
  t.equal(renewed.status, 200)
  t.equal(renewed.body?.['expirationDateTime'], minutes(60))
  const badPatch = await calls.graph('PATCH', `/v1.0/subscriptions/${id}`, aliceToken, { lifecycleNotificationUrl: receiver.url('/x') })
  t.equal(badPatch.status, 400)
  t.equal((await calls.graph('POST', `/v1.0/subscriptions/${id}/reauthorize`, aliceToken)).status, 204)
  t.equal((await calls.graph('DELETE', `/v1.0/subscriptions/${id}`, aliceToken)).status, 204)
  t.equal((await calls.graph('GET', `/v1.0/subscriptions/${id}`, aliceToken)).status, 404)
  t.equal(sim.getSubscription(id), undefined)
  for (const s of sim.getSubscriptions()) sim.removeSubscription(s.id)
})

t.test('expiry: more than 60 minutes is 400, less than 45 becomes 45', async (t) => {
  const tooLong = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request({ expirationDateTime: minutes(61) }))
  t.equal(tooLong.status, 400)
  t.match(tooLong.body, { error: { message: /60 minutes/ } })
  const short = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request({ expirationDateTime: minutes(10) }))
  t.equal(short.status, 201)
  t.equal(short.body?.['expirationDateTime'], minutes(45))
  sim.removeSubscription(String(short.body?.['id']))
})

t.test('resource, changeType, URL and clientState rules', async (t) => {
  const ids = Array.from({ length: 651 }, () => randomUUID())
  const tooMany = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request({
    resource: `/communications/presences?$filter=id in (${ids.map((i) => `'${i}'`).join(',')})`,
  }))
  t.equal(tooMany.status, 400)
  t.match(tooMany.body, { error: { message: /at most 650/ } })
  const ok650 = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request({
    resource: `/communications/presences?$filter=id in (${ids.slice(0, 650).map((i) => `'${i}'`).join(',')})`,
  }))
  t.equal(ok650.status, 201, '650 ids are accepted')
  sim.removeSubscription(String(ok650.body?.['id']))
  for (const [bad, pattern] of [
    [{ changeType: 'created,updated' }, /changeType/],
    [{ notificationUrl: 'http://127.0.0.1/notify' }, /https/],
    [{ clientState: 'x'.repeat(129) }, /128/],
    [{ includeResourceData: true }, /encryptionCertificate/],
    [{ resource: '/users' }, /not supported/],
  ] as const) {
    const res = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request(bad))
    t.equal(res.status, 400, JSON.stringify(bad).slice(0, 60))
    t.match(res.body, { error: { message: pattern } })
  }
  t.same(sim.getSubscriptions(), [])
})

t.test('a wrong handshake answer (token still URL-encoded, or an error) means no subscription', async (t) => {
  t.teardown(() => {
    receiver.validation = 'echo'
  })
  for (const mode of ['echo-encoded', 'fail'] as const) {
    receiver.validation = mode
    const res = await calls.graph('POST', '/v1.0/subscriptions', aliceToken, request())
    t.equal(res.status, 400, mode)
    t.match(res.body, { error: { code: 'ValidationError', message: /^Subscription validation request failed/ } })
  }
  t.same(sim.getSubscriptions(), [])
  t.ok(sim.notificationStats().validationFailures >= 2)
})
