import t from 'tap'
import { decodeJwt } from 'jose'
import { Agent } from 'undici'
import { GraphSimulator } from '../../cloud-relay/graph-sim/graph-simulator.js'
import { PRESENCE_SCOPES, publicClient, signInWithDeviceCode } from './fixtures/msal-public.js'

// Simulator time stands still unless a test advances it; delegated access tokens live 120 s, which msal
// (renewing 300 s before expiry) treats as due at once, so every acquireTokenSilent goes to the refresh grant.
const frozen = Date.now()
const sim = new GraphSimulator({
  clock: { now: () => frozen },
  delegatedTokenLifetimeSeconds: 120,
  deviceCodeIntervalSeconds: 0.02,
})
const app = sim.addApp({ displayName: 'presence sync' })
const alice = sim.addUser({ displayName: 'Alice', userPrincipalName: 'alice@contoso.example' })
const bob = sim.addUser({ displayName: 'Bob', userPrincipalName: 'bob@contoso.example' })
await sim.start()
const dispatcher = new Agent({ connect: { ca: sim.caPem } })
t.teardown(async () => {
  await dispatcher.close()
  await sim.stop()
})

interface MsalFailure {
  errorCode?: string
  errorNo?: string | number
  errorMessage?: string
  subError?: string
}

async function failure(run: () => Promise<unknown>): Promise<MsalFailure> {
  try {
    await run()
  } catch (err) {
    return err as MsalFailure
  }
  throw new Error('expected the call to fail')
}

async function tokenForm(form: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${sim.tokenEndpoint}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
    dispatcher,
  } as RequestInit)
  return { status: response.status, body: (await response.json()) as Record<string, unknown> }
}

t.test('device code: msal polls while pending, the person approves, msal gets a delegated token and account', async (t) => {
  const polls: number[] = []
  const onRequest = (e: { operation: string; status: number }): void => {
    if (e.operation === 'token') polls.push(e.status)
  }
  sim.on('request', onRequest)
  t.teardown(() => sim.off('request', onRequest))
  const pca = publicClient(sim, app.clientId)
  const result = await signInWithDeviceCode(pca, async (code) => {
    t.match(code.message, code.userCode)
    t.match(code.verificationUri, `${sim.url}/devicelogin`)
    t.same(sim.pendingDeviceCodes().map((c) => c.userCode), [code.userCode])
    // Let msal see authorization_pending a few times before the person signs in.
    while (polls.length < 3) await new Promise((resolve) => setTimeout(resolve, 10))
    sim.approveDeviceCode(code.userCode, 'alice@contoso.example')
  })
  t.ok(polls.slice(0, 3).every((s) => s === 400), 'pending polls are 400 authorization_pending')
  t.equal(result.account?.username, 'alice@contoso.example')
  t.equal(result.account?.localAccountId, alice.id)
  t.equal(result.account?.tenantId, sim.tenantId)
  const claims = decodeJwt(result.accessToken)
  t.equal(claims['scp'], 'Presence.Read.All')
  t.equal(claims['oid'], alice.id)
  t.equal(claims['appid'], app.clientId)
  t.equal(claims['azp'], app.clientId)
  t.equal(claims['tid'], sim.tenantId)
  t.equal(claims['roles'], undefined)
  t.same(sim.pendingDeviceCodes(), [])
})

t.test('acquireTokenSilent refreshes with a rotated refresh token; the used one stops working', async (t) => {
  const pca = publicClient(sim, app.clientId)
  const first = await signInWithDeviceCode(pca, (code) => sim.approveDeviceCode(code.userCode, alice.id))
  const cacheBefore = JSON.parse(pca.getTokenCache().serialize()) as { RefreshToken: Record<string, { secret: string }> }
  const oldRefresh = Object.values(cacheBefore.RefreshToken)[0]?.secret ?? ''
  t.match(oldRefresh, /^sim-rt\./)
  const account = first.account
  if (account === null) throw new Error('no account')
  const second = await pca.acquireTokenSilent({ account, scopes: PRESENCE_SCOPES })
  t.not(second.accessToken, first.accessToken, 'a new access token came from the refresh grant')
  t.equal(decodeJwt(second.accessToken)['oid'], alice.id)
  const cacheAfter = JSON.parse(pca.getTokenCache().serialize()) as { RefreshToken: Record<string, { secret: string }> }
  const newRefresh = Object.values(cacheAfter.RefreshToken)[0]?.secret ?? ''
  t.not(newRefresh, oldRefresh, 'the refresh token rotated')
  const reuse = await tokenForm({ grant_type: 'refresh_token', client_id: app.clientId, refresh_token: oldRefresh, scope: 'Presence.Read.All' })
  t.equal(reuse.status, 400)
  t.equal(reuse.body['error'], 'invalid_grant')
})

t.test('revoked sessions, a disabled account and an idle refresh token reach msal as invalid_grant with the AADSTS code', async (t) => {
  const signIn = async (user: string) => {
    const pca = publicClient(sim, app.clientId)
    const result = await signInWithDeviceCode(pca, (code) => sim.approveDeviceCode(code.userCode, user))
    const account = result.account
    if (account === null) throw new Error('no account')
    return () => pca.acquireTokenSilent({ account, scopes: PRESENCE_SCOPES })
  }

  const revoked = await signIn(bob.id)
  await revoked()
  sim.revokeSignInSessions(bob.id)
  const e1 = await failure(revoked)
  t.equal(e1.errorCode, 'invalid_grant')
  t.equal(String(e1.errorNo), '50173')

  const disabled = await signIn(bob.id)
  sim.disableUser('bob@contoso.example')
  const e2 = await failure(disabled)
  t.equal(e2.errorCode, 'invalid_grant')
  t.equal(String(e2.errorNo), '50057')
  sim.enableUser(bob.id)
  await disabled()

  const idle = await signIn(alice.id)
  sim.advance(91 * 86_400_000)
  const e3 = await failure(idle)
  t.equal(e3.errorCode, 'invalid_grant')
  t.equal(String(e3.errorNo), '700082')
})

t.test('consent withdrawn: the refresh fails with AADSTS65001 consent_required', async (t) => {
  const other = sim.addApp({ displayName: 'consent test' })
  const pca = publicClient(sim, other.clientId)
  const result = await signInWithDeviceCode(pca, (code) => sim.approveDeviceCode(code.userCode, alice.id))
  sim.setDelegatedScopes(other.clientId, ['User.Read'])
  const err = await failure(() => pca.acquireTokenSilent({ account: result.account!, scopes: PRESENCE_SCOPES }))
  t.equal(err.errorCode, 'invalid_grant')
  t.equal(String(err.errorNo), '65001')
  t.equal(err.subError, 'consent_required')
})

t.test('device code declined, expired, or public client flows off', async (t) => {
  const pca = publicClient(sim, app.clientId)
  const declined = await failure(() => signInWithDeviceCode(pca, (code) => sim.declineDeviceCode(code.userCode)))
  t.match(declined.errorMessage, /authorization_declined/)

  const expired = await failure(() => signInWithDeviceCode(pca, () => sim.advance(16 * 60_000)))
  t.match(expired.errorMessage, /expired_token/)

  const confidentialOnly = sim.addApp({ allowPublicClient: false })
  const denied = await failure(() =>
    signInWithDeviceCode(publicClient(sim, confidentialOnly.clientId), (code) => sim.approveDeviceCode(code.userCode, alice.id)),
  )
  t.match(denied.errorMessage, /invalid_client/)
  const raw = await tokenForm({ grant_type: 'device_code', client_id: confidentialOnly.clientId, device_code: 'x' })
  t.same(raw.body['error_codes'], [7000218])
})
