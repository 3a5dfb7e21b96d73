import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import { observed, startNotifyHarness, TENANT } from './fixtures/notify-harness.js'

// Delegated access tokens of 120 s are always "due" for msal (it renews 5 min before expiry), so every token
// the relay needs comes from the refresh token; refresh tokens die after 10 idle minutes of simulator time.
const h = await startNotifyHarness({
  people: 3,
  pollIntervalMs: 300,
  sim: { delegatedTokenLifetimeSeconds: 120, refreshTokenInactiveMs: 10 * 60_000 },
})
t.teardown(() => h.close())
await h.startRelay()

t.test('an expired refresh token: the account needs a sign-in, the admin is told what to do, its people are polled', async (t) => {
  const accountId = await h.signIn(h.sync[0]!)
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 3, 'a working subscription')
  await h.relay.observation.idle()
  const sub = h.sim.getSubscriptions()[0]!

  h.sim.advance(11 * 60_000)
  h.sim.requestReauthorization(sub.id)
  await eventually(async () => {
    const r = await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)
    const account = (r.body as { accounts: Array<{ id: string; state: string }> }).accounts.find((a) => a.id === accountId)
    return account?.state === 'needs-sign-in'
  }, 'the account to need a sign-in')
  const list = (await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)).body as {
    accounts: Array<{ state: string; reason: string; action: string }>
    shards: unknown[]
    polled: number
  }
  t.match(list.accounts[0]!.reason, /refresh token of sync0@contoso\.example has expired \(AADSTS700082\)/)
  t.match(list.accounts[0]!.action, /sign in again: POST \/api\/v1\/tenants\/contoso\/service-accounts\/sign-in/)
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 0, 'the shard to be given up')
  const after = (await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)).body as typeof list
  t.equal(after.polled, 3, 'all three people are polled now')

  const events = (await h.api('GET', `/api/v1/events?tenant=${TENANT}&kind=service-account.`)).body as { events: Array<{ kind: string; message: string }> }
  t.ok(events.events.some((e) => e.kind === 'service-account.needs-sign-in' && /polled meanwhile/.test(e.message)), 'an event-log entry')

  // Nothing is lost: a change is seen by polling.
  const polled = h.counters.get('presence.read.polled')
  const person = h.users[0]!
  h.sim.teams(person.id).startCall()
  await eventually(() => observed(h.relay, person.id) === 'Busy/InACall', 'the call to be seen by polling')
  t.ok(h.counters.get('presence.read.polled') > polled)

  // Signing in again brings the subscription back.
  await h.signIn(h.sync[0]!)
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 3, 'a subscription again')
  const again = (await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)).body as typeof list
  t.equal(again.accounts.length, 1, 'the same account, signed in again')
  t.equal(again.accounts[0]!.state, 'ok')
})

async function accountState(): Promise<{ state: string; reason: string | null; action: string | null }> {
  const r = await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts`)
  return (r.body as { accounts: Array<{ state: string; reason: string | null; action: string | null }> }).accounts[0]!
}

async function refreshNow(): Promise<void> {
  const sub = h.sim.getSubscriptions()[0]
  if (sub) h.sim.requestReauthorization(sub.id)
  await eventually(async () => (await accountState()).state === 'needs-sign-in', 'the account to need a sign-in')
}

t.test('a disabled account and withdrawn consent each say what to fix', async (t) => {
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 3, 'a working subscription')
  h.sim.disableUser(h.sync[0]!.id)
  await refreshNow()
  const disabled = await accountState()
  t.match(disabled.reason, /sync0@contoso\.example is disabled or locked in Entra ID \(AADSTS50057\)/)
  t.match(disabled.action, /enable it \(Entra ID → Users → sync0@contoso\.example → Account status\)/)
  h.sim.enableUser(h.sync[0]!.id)

  await h.signIn(h.sync[0]!)
  await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 3, 'a subscription again')
  h.sim.setDelegatedScopes(h.app.clientId, [])
  await refreshNow()
  const consent = await accountState()
  t.match(consent.reason, /lacks consent for the delegated permission Presence\.Read\.All \(AADSTS65001\)/)
  t.match(consent.action, /API permissions, add Presence\.Read\.All \(Delegated\) and grant admin consent/)
  h.sim.setDelegatedScopes(h.app.clientId, ['Presence.Read.All', 'User.Read'])
})

t.test('a declined device code sign-in ends as failed with the reason', async (t) => {
  const started = await h.api('POST', `/api/v1/tenants/${TENANT}/service-accounts/sign-in`)
  t.equal(started.status, 200)
  const view = started.body as { id: string; userCode: string; verificationUri: string; message: string; state: string }
  t.equal(view.state, 'waiting')
  t.match(view.message, view.userCode, 'the message tells the person the code')
  h.sim.declineDeviceCode(view.userCode)
  const done = await eventually(async () => {
    const r = (await h.api('GET', `/api/v1/tenants/${TENANT}/service-accounts/sign-ins/${view.id}`)).body as { state: string; error: string | null }
    return r.state === 'failed' ? r : undefined
  }, 'the sign-in to fail')
  t.match(done.error, /declined the sign-in: start it again/)
  t.equal((await h.api('GET', `/api/v1/tenants/other/service-accounts`)).status, 404, 'an unknown tenant is a 404')
})
