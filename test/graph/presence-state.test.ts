import t from 'tap'
import { startHarness } from './fixtures/harness.js'

const h = await startHarness()
t.teardown(() => h.close())
const client = h.client()

const read = async (userId: string): Promise<{ availability: string; activity: string }> => {
  const [reading] = await client.getPresences([userId])
  if (reading === undefined) throw new Error('no reading')
  return { availability: reading.availability, activity: reading.activity }
}

t.test('a user who never signed in is PresenceUnknown; after the last session ends, Offline', async (t) => {
  t.same(await read(h.carol.id), { availability: 'PresenceUnknown', activity: 'PresenceUnknown' })
  await client.setPresence(h.carol.id, { availability: 'Available', activity: 'Available' }, 5)
  t.same(await read(h.carol.id), { availability: 'Available', activity: 'Available' })
  await client.clearPresence(h.carol.id)
  t.same(await read(h.carol.id), { availability: 'Offline', activity: 'Offline' }, 'clearPresence doc: only session → Offline')
})

t.test('Teams conference + our DoNotDisturb/Presenting: DoNotDisturb wins; cleared → Teams state again', async (t) => {
  const teams = h.sim.teams(h.alice.id)
  teams.startConference()
  t.same(await read(h.alice.id), { availability: 'Busy', activity: 'InAConferenceCall' })
  await client.setPresence(h.alice.id, { availability: 'DoNotDisturb', activity: 'Presenting' }, 30)
  t.same(await read(h.alice.id), { availability: 'DoNotDisturb', activity: 'Presenting' })
  await client.clearPresence(h.alice.id)
  t.same(await read(h.alice.id), { availability: 'Busy', activity: 'InAConferenceCall' })
  teams.endActivity()
  t.same(await read(h.alice.id), { availability: 'Available', activity: 'Available' })
})

t.test('Busy beats Available and Away; Busy/InACall beats a calendar Busy/InAMeeting', async (t) => {
  const teams = h.sim.teams(h.bob.id)
  teams.setAvailable()
  await client.setPresence(h.bob.id, { availability: 'Away', activity: 'Away' }, 10)
  t.same(await read(h.bob.id), { availability: 'Available', activity: 'Available' }, 'Available > Away')
  await client.setPresence(h.bob.id, { availability: 'Busy', activity: 'InACall' }, 10)
  t.same(await read(h.bob.id), { availability: 'Busy', activity: 'InACall' }, 'Busy > Available')
  teams.joinCalendarMeeting()
  t.same(await read(h.bob.id), { availability: 'Busy', activity: 'InACall' }, 'call > meeting (assumption)')
  await client.clearPresence(h.bob.id)
  t.same(await read(h.bob.id), { availability: 'Busy', activity: 'InAMeeting' })
  teams.setFocusing()
  t.same(await read(h.bob.id), { availability: 'DoNotDisturb', activity: 'Focusing' })
  teams.startPresenting()
  t.same(await read(h.bob.id), { availability: 'DoNotDisturb', activity: 'Presenting' })
  teams.startCall()
  t.same(await read(h.bob.id), { availability: 'Busy', activity: 'InACall' })
  teams.endActivity()
})

t.test('a manual Do not disturb (user-preferred) overrides every session', async (t) => {
  const teams = h.sim.teams(h.bob.id)
  teams.setAvailable()
  teams.setDnd()
  t.same(await read(h.bob.id), { availability: 'DoNotDisturb', activity: 'DoNotDisturb' })
  await client.setPresence(h.bob.id, { availability: 'Busy', activity: 'InACall' }, 10)
  t.same(await read(h.bob.id), { availability: 'DoNotDisturb', activity: 'DoNotDisturb' }, 'our Busy is masked')
  teams.startConference()
  t.same(await read(h.bob.id), { availability: 'DoNotDisturb', activity: 'DoNotDisturb' }, 'a Teams call is masked too')
  teams.resetStatus()
  t.same(await read(h.bob.id), { availability: 'Busy', activity: 'InAConferenceCall' })
  await client.clearPresence(h.bob.id)
  teams.endActivity()
})

t.test('a user-preferred state without any session shows Offline', async (t) => {
  const teams = h.sim.teams(h.carol.id)
  teams.setDnd()
  teams.signOut()
  t.same(await read(h.carol.id), { availability: 'Offline', activity: 'Offline' })
  await client.setPresence(h.carol.id, { availability: 'Available', activity: 'Available' }, 5)
  t.same(await read(h.carol.id), { availability: 'DoNotDisturb', activity: 'DoNotDisturb' }, 'preference applies again')
  await client.clearPresence(h.carol.id)
  teams.resetStatus()
})

t.test('GET presence by users/{id}, users/{upn} and communications/presences/{id}; sequenceNumber grows', async (t) => {
  const token = await h.token()
  const teams = h.sim.teams(h.alice.id)
  teams.setAvailable()
  const first = await h.raw('GET', `/v1.0/users/${h.alice.id}/presence`, { token })
  t.equal(first.status, 200)
  t.match(first.body, {
    id: h.alice.id,
    availability: 'Available',
    activity: 'Available',
    outOfOfficeSettings: { isOutOfOffice: false },
    sequenceNumber: String,
  })
  teams.startCall()
  const second = await h.raw('GET', `/v1.0/communications/presences/${h.alice.id}`, { token })
  t.match(second.body, { availability: 'Busy', activity: 'InACall' })
  const seq = (r: { body: unknown }): string => String((r.body as { sequenceNumber?: unknown }).sequenceNumber)
  t.ok(seq(second) > seq(first), 'sequenceNumber sorts after the previous one')
  const again = await h.raw('GET', '/v1.0/users/ALICE@contoso.example/presence', { token })
  t.equal(seq(again), seq(second), 'unchanged presence keeps its sequenceNumber')
  const missing = await h.raw('GET', '/v1.0/users/0f0f0f0f-0000-4000-8000-000000000000/presence', { token })
  t.equal(missing.status, 404)
  teams.endActivity()
})

t.test('presenceChanged events follow changes made through Graph and Teams', async (t) => {
  const changes: string[] = []
  const onChange = (e: { userId: string; current: { availability: string; activity: string } }): void => {
    if (e.userId === h.alice.id) changes.push(`${e.current.availability}/${e.current.activity}`)
  }
  h.sim.on('presenceChanged', onChange)
  t.teardown(() => h.sim.off('presenceChanged', onChange))
  h.sim.teams(h.alice.id).startCall()
  await client.setPresence(h.alice.id, { availability: 'DoNotDisturb', activity: 'Presenting' }, 5)
  await client.setPresence(h.alice.id, { availability: 'DoNotDisturb', activity: 'Presenting' }, 5)
  await client.clearPresence(h.alice.id)
  h.sim.teams(h.alice.id).endActivity()
  t.same(changes, ['Busy/InACall', 'DoNotDisturb/Presenting', 'Busy/InACall', 'Available/Available'], 'a refresh is no change')
})

// Fading and expiry, on a harness of their own because they move simulated time by hours.
t.test('sessions fade and expire with simulated time', async (g) => {
  const MIN = 60_000
  const h = await startHarness()
  g.teardown(() => h.close())
  const client = h.client()

  g.test('an Available session that is not refreshed fades: AvailableInactive after 5 min, Away after 10', async (t) => {
    await client.setPresence(h.alice.id, { availability: 'Available', activity: 'Available' }, 60)
    h.sim.advance(4 * MIN + 59_000)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'Available', activity: 'Available' })
    h.sim.advance(1000)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'Available', activity: 'AvailableInactive' })
    h.sim.advance(5 * MIN)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'Away', activity: 'Away' })
    t.match(h.sim.getSession(h.alice.id, h.app.clientId), {
      availability: 'Available',
      effective: { availability: 'Away', activity: 'Away' },
    })
    // Read through the real client as well (the token is still valid: 10 of 60 simulated minutes).
    t.match(await client.getPresences([h.alice.id]), [{ availability: 'Away', activity: 'Away' }])
    await client.clearPresence(h.alice.id)
  })

  g.test('a keep-alive (setPresence again) before 5 min holds the state', async (t) => {
    await client.setPresence(h.bob.id, { availability: 'Available', activity: 'Available' }, 60)
    for (let i = 0; i < 4; i++) {
      h.sim.advance(4 * MIN)
      await client.setPresence(h.bob.id, { availability: 'Available', activity: 'Available' }, 60)
    }
    h.sim.advance(4 * MIN)
    t.match(h.sim.getPresence(h.bob.id), { availability: 'Available', activity: 'Available' })
    await client.clearPresence(h.bob.id)
  })

  g.test('Busy and DoNotDisturb sessions do not fade before they expire (assumption: docs are silent)', async (t) => {
    await client.setPresence(h.alice.id, { availability: 'DoNotDisturb', activity: 'Presenting' }, 30)
    await client.setPresence(h.carol.id, { availability: 'Busy', activity: 'InACall' }, 30)
    h.sim.advance(29 * MIN)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'DoNotDisturb', activity: 'Presenting' })
    t.match(h.sim.getPresence(h.carol.id), { availability: 'Busy', activity: 'InACall' })
    h.sim.advance(MIN)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'Offline', activity: 'Offline' }, 'expired: session gone')
    t.equal(h.sim.getSession(h.alice.id, h.app.clientId), undefined)
    t.equal(await client.clearPresence(h.alice.id), 'absent', 'an expired session cannot be cleared')
    t.equal(await client.clearPresence(h.carol.id), 'absent')
  })

  g.test('expiry of our session reveals the Teams state underneath', async (t) => {
    const teams = h.sim.teams(h.bob.id)
    teams.startConference()
    await client.setPresence(h.bob.id, { availability: 'DoNotDisturb', activity: 'Presenting' }, 5)
    t.match(h.sim.getPresence(h.bob.id), { availability: 'DoNotDisturb' })
    h.sim.advance(5 * MIN)
    t.match(h.sim.getPresence(h.bob.id), { availability: 'Busy', activity: 'InAConferenceCall' })
    teams.endActivity()
  })

  g.test('the default expiration is 5 minutes; PT4H lasts four hours', async (t) => {
    const token = await h.token()
    const res = await h.raw('POST', `/v1.0/users/${h.carol.id}/presence/setPresence`, {
      token,
      body: { sessionId: h.app.clientId, availability: 'Busy', activity: 'InAConferenceCall' },
    })
    t.equal(res.status, 200)
    h.sim.advance(5 * MIN - 1)
    t.match(h.sim.getPresence(h.carol.id), { activity: 'InAConferenceCall' })
    h.sim.advance(1)
    t.match(h.sim.getPresence(h.carol.id), { availability: 'Offline' })

    await client.setPresence(h.carol.id, { availability: 'Busy', activity: 'InACall' }, 240)
    h.sim.advance(240 * MIN - 1)
    t.match(h.sim.getPresence(h.carol.id), { activity: 'InACall' })
    h.sim.advance(1)
    t.match(h.sim.getPresence(h.carol.id), { availability: 'Offline' })
  })

  g.test('a manual DND expires by itself (default 1 day)', async (t) => {
    const teams = h.sim.teams(h.alice.id)
    teams.setAvailable()
    teams.setDnd()
    h.sim.advance(24 * 60 * MIN - 1)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'DoNotDisturb', activity: 'DoNotDisturb' })
    h.sim.advance(1)
    t.match(h.sim.getPresence(h.alice.id), { availability: 'Available', activity: 'Available' })
  })

  g.test('advance() moves presence time only: the cached token keeps working after hours', async (t) => {
    h.sim.advance(5 * 60 * MIN)
    t.equal((await client.findUser(h.alice.id))?.id, h.alice.id)
  })
})
