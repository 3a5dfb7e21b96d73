import t from 'tap'
import type { SetPresenceEvent } from '../../cloud-relay/graph-sim/graph-simulator.js'
import type { SettablePresence } from '../../cloud-relay/src/graph/types.js'
import { graphError, graphErrorBody, startHarness } from './fixtures/harness.js'

const h = await startHarness()
t.teardown(() => h.close())
const client = h.client()

const FIVE: SettablePresence[] = [
  { availability: 'Available', activity: 'Available' },
  { availability: 'Busy', activity: 'InACall' },
  { availability: 'Busy', activity: 'InAConferenceCall' },
  { availability: 'Away', activity: 'Away' },
  { availability: 'DoNotDisturb', activity: 'Presenting' },
]

t.test('each of the five documented pairs is accepted and becomes our session', async (t) => {
  const events: SetPresenceEvent[] = []
  const onSet = (e: SetPresenceEvent): void => {
    events.push(e)
  }
  h.sim.on('setPresence', onSet)
  t.teardown(() => h.sim.off('setPresence', onSet))
  for (const pair of FIVE) {
    await client.setPresence(h.alice.id, pair, 30)
    t.match(h.sim.getSession(h.alice.id, h.app.clientId), { ...pair, owner: { kind: 'app', appId: h.app.clientId } })
    t.match(h.sim.getPresence(h.alice.id), pair)
  }
  t.equal(events.length, 5)
  t.match(events[0], { userId: h.alice.id, appId: h.app.clientId, expirationMs: 30 * 60_000, at: Number })
  await client.clearPresence(h.alice.id)
})

t.test('Busy/Busy is not settable: Graph answers 400, the client says GRAPH_REQUEST', async (t) => {
  const err = await graphError(() =>
    client.setPresence(h.alice.id, { availability: 'Busy', activity: 'Busy' } as unknown as SettablePresence, 5),
  )
  t.equal(err.code, 'GRAPH_REQUEST')
  t.equal(err.status, 400)
  t.equal(h.sim.getSession(h.alice.id, h.app.clientId), undefined)
})

t.test('the simulator validates the setPresence body', async (t) => {
  const token = await h.token()
  const path = `/v1.0/users/${h.bob.id}/presence/setPresence`
  const base = { sessionId: h.app.clientId, availability: 'Available', activity: 'Available' }
  const cases: Array<[string, Record<string, unknown>]> = [
    ['DoNotDisturb/DoNotDisturb is user-preferred only', { ...base, availability: 'DoNotDisturb', activity: 'DoNotDisturb' }],
    ['Busy/InAMeeting comes from the calendar', { ...base, availability: 'Busy', activity: 'InAMeeting' }],
    ['lower-case values', { ...base, availability: 'available', activity: 'available' }],
    ['duration below PT5M', { ...base, expirationDuration: 'PT4M' }],
    ['duration above PT4H', { ...base, expirationDuration: 'PT4H1M' }],
    ['duration not ISO-8601', { ...base, expirationDuration: '30 minutes' }],
    ['wrong sessionId', { ...base, sessionId: '5c1d3f7a-0000-4000-8000-000000000000' }],
    ['missing sessionId', { availability: 'Available', activity: 'Available' }],
  ]
  for (const [name, body] of cases) {
    const res = await h.raw('POST', path, { token, body })
    t.equal(res.status, 400, name)
    t.equal(graphErrorBody(res.body).code, 'BadRequest', name)
  }
  t.equal(h.sim.getSession(h.bob.id, h.app.clientId), undefined, 'nothing was set')
})

t.test('expirationDuration: PT5M and PT4H are the inclusive bounds, PT5M the default', async (t) => {
  const token = await h.token()
  const path = `/v1.0/users/${h.bob.id}/presence/setPresence`
  const base = { sessionId: h.app.clientId, availability: 'Busy', activity: 'InACall' }
  for (const [duration, ms] of [['PT5M', 5], ['PT4H', 240], ['PT1H30M', 90], [undefined, 5]] as const) {
    const res = await h.raw('POST', path, { token, body: duration === undefined ? base : { ...base, expirationDuration: duration } })
    t.equal(res.status, 200, String(duration))
    t.equal(res.body, undefined, '200 with an empty body')
    const session = h.sim.getSession(h.bob.id, h.app.clientId)
    t.equal((session?.expiresAt ?? 0) - h.sim.now(), ms * 60_000, String(duration))
  }
})

t.test('the client refuses an expiration outside 5..240 minutes without calling Graph', async (t) => {
  const before = h.sim.requestCount('setPresence')
  for (const minutes of [4, 241, 7.5]) {
    const err = await graphError(() => client.setPresence(h.alice.id, { availability: 'Away', activity: 'Away' }, minutes))
    t.equal(err.code, 'GRAPH_REQUEST')
  }
  t.equal(h.sim.requestCount('setPresence'), before)
})

t.test('the SDK form microsoft.graph.setPresence and /communications/presences/{id} work too', async (t) => {
  const token = await h.token()
  const res = await h.raw('POST', `/v1.0/communications/presences/${h.carol.id}/microsoft.graph.setPresence`, {
    token,
    body: { sessionId: h.app.clientId, availability: 'Busy', activity: 'InAConferenceCall', expirationDuration: 'PT10M' },
  })
  t.equal(res.status, 200)
  t.match(h.sim.getPresence(h.carol.id), { availability: 'Busy', activity: 'InAConferenceCall' })
  const cleared = await h.raw('POST', `/v1.0/users/${h.carol.id}/presence/microsoft.graph.clearPresence`, {
    token,
    body: { sessionId: h.app.clientId },
  })
  t.equal(cleared.status, 200)
  const shouting = await h.raw('POST', `/v1.0/Users/${h.carol.id.toUpperCase()}/Presence/SETPRESENCE`, {
    token,
    body: { sessionId: h.app.clientId, availability: 'Away', activity: 'Away' },
  })
  t.equal(shouting.status, 200, 'Graph paths and ids are case-insensitive')
  t.match(h.sim.getSession(h.carol.id, h.app.clientId), { availability: 'Away' })
})

t.test('clearPresence: cleared, then 404 which the client reports as absent', async (t) => {
  await client.setPresence(h.alice.id, { availability: 'DoNotDisturb', activity: 'Presenting' }, 15)
  t.equal(await client.clearPresence(h.alice.id), 'cleared')
  t.equal(h.sim.getSession(h.alice.id, h.app.clientId), undefined)
  t.equal(await client.clearPresence(h.alice.id), 'absent')
  const token = await h.token()
  const res = await h.raw('POST', `/v1.0/users/${h.alice.id}/presence/clearPresence`, { token, body: { sessionId: h.app.clientId } })
  t.equal(res.status, 404)
})

t.test('setPresence for an unknown user is 404 → GRAPH_REQUEST', async (t) => {
  const err = await graphError(() =>
    client.setPresence('0f0f0f0f-0000-4000-8000-000000000000', { availability: 'Available', activity: 'Available' }, 5),
  )
  t.equal(err.code, 'GRAPH_REQUEST')
  t.equal(err.status, 404)
})

t.test('one session per app: two apps hold separate sessions for the same user', async (t) => {
  const other = h.sim.addApp({ displayName: 'another presence app' })
  const otherClient = h.client({ clientId: other.clientId, clientSecret: other.clientSecret })
  await client.setPresence(h.bob.id, { availability: 'Busy', activity: 'InACall' }, 10)
  await otherClient.setPresence(h.bob.id, { availability: 'Away', activity: 'Away' }, 10)
  t.match(h.sim.getSession(h.bob.id, h.app.clientId), { activity: 'InACall' })
  t.match(h.sim.getSession(h.bob.id, other.clientId), { activity: 'Away' })
  t.equal(await otherClient.clearPresence(h.bob.id), 'cleared')
  t.match(h.sim.getSession(h.bob.id, h.app.clientId), { activity: 'InACall' }, 'ours is untouched')
  await client.clearPresence(h.bob.id)
})
