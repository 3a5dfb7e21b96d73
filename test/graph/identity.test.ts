import t from 'tap'
import { decodeJwt } from 'jose'
import { graphError, graphErrorBody, startHarness } from './fixtures/harness.js'

const h = await startHarness()
t.teardown(() => h.close())

t.test('the right secret gets a token through real msal-node, and msal caches it', async (t) => {
  const tokens: string[] = []
  const onToken = (e: { outcome: string }): void => {
    tokens.push(e.outcome)
  }
  h.sim.on('token', onToken)
  t.teardown(() => h.sim.off('token', onToken))
  const client = h.client()
  t.equal(await client.findUser(h.alice.id).then((u) => u?.id), h.alice.id)
  t.equal(await client.findUser(h.bob.id).then((u) => u?.id), h.bob.id)
  t.same(tokens, ['issued'], 'one token request for two Graph calls')
})

t.test('the issued token carries the app identity Graph checks', async (t) => {
  const claims = decodeJwt(await h.token())
  t.equal(claims['appid'], h.app.clientId)
  t.equal(claims['azp'], h.app.clientId)
  t.equal(claims['tid'], h.sim.tenantId)
  t.equal(claims['idtyp'], 'app')
  t.same(claims['roles'], ['Presence.ReadWrite.All', 'User.Read.All'])
  t.equal(claims.aud, 'https://graph.microsoft.com')
  t.equal((claims.exp ?? 0) - (claims.iat ?? 0), 3599)
})

t.test('a wrong secret is GRAPH_AUTH with instructions for the admin', async (t) => {
  const err = await graphError(() => h.client({ clientSecret: 'not-the-secret' }).findUser(h.alice.id))
  t.equal(err.code, 'GRAPH_AUTH')
  t.equal(err.status, 401)
  t.match(err.message, /client secret was rejected/)
  t.match(err.message, /Certificates & secrets/)
  t.match(err.message, /update the relay config/)
  t.match(err.message, h.app.clientId)
})

t.test('the token endpoint answers a wrong secret like Entra ID', async (t) => {
  const res = await h.raw('POST', `/${h.sim.tenantId}/oauth2/v2.0/token`, {
    form: {
      grant_type: 'client_credentials',
      client_id: h.app.clientId,
      client_secret: 'nope',
      scope: 'https://graph.microsoft.com/.default',
    },
  })
  t.equal(res.status, 401)
  t.match(res.body, { error: 'invalid_client', error_codes: [7000215], error_description: /^AADSTS7000215: / })
})

t.test('an unknown client id is GRAPH_AUTH naming the app and tenant', async (t) => {
  const unknown = '00000000-1111-2222-3333-444444444444'
  const err = await graphError(() => h.client({ clientId: unknown }).findUser(h.alice.id))
  t.equal(err.code, 'GRAPH_AUTH')
  t.equal(err.status, 400)
  t.match(err.message, `the app ${unknown} does not exist in tenant ${h.sim.tenantId}`)
})

t.test('an expired secret says so', async (t) => {
  const stale = h.sim.addApp({ secretExpired: true })
  const err = await graphError(() =>
    h.client({ clientId: stale.clientId, clientSecret: stale.clientSecret }).findUser(h.alice.id),
  )
  t.equal(err.code, 'GRAPH_AUTH')
  t.match(err.message, /client secret has expired/)
})

t.test('a wrong tenant id is GRAPH_AUTH, with or without pinned metadata', async (t) => {
  const otherTenant = '99999999-8888-7777-6666-555555555555'
  for (const overrides of [{}, { authorityMetadata: undefined }]) {
    const err = await graphError(() => h.client({ tenantId: otherTenant, ...overrides }).findUser(h.alice.id))
    t.equal(err.code, 'GRAPH_AUTH')
    t.match(err.message, `tenant ${otherTenant} was not found`)
  }
})

t.test('an unreachable authority is GRAPH_UNAVAILABLE and says where', async (t) => {
  const err = await graphError(() =>
    h.client({ authorityHost: 'https://127.0.0.1:9', authorityMetadata: undefined }).findUser(h.alice.id),
  )
  t.equal(err.code, 'GRAPH_UNAVAILABLE')
  t.match(err.message, 'https://127.0.0.1:9/')
})

t.test('without authorityMetadata msal discovers the OpenID document from the simulator', async (t) => {
  const client = h.client({ authorityMetadata: undefined })
  t.equal((await client.findUser('bob@contoso.example'))?.id, h.bob.id)
  const res = await h.raw('GET', `/${h.sim.tenantId}/v2.0/.well-known/openid-configuration`)
  t.match(res.body, {
    issuer: h.sim.issuer,
    token_endpoint: h.sim.tokenEndpoint,
    jwks_uri: `${h.sim.url}/${h.sim.tenantId}/discovery/v2.0/keys`,
    device_authorization_endpoint: String,
    authorization_endpoint: String,
  })
  const keys = await h.raw('GET', `/${h.sim.tenantId}/discovery/v2.0/keys`)
  t.match(keys.body, { keys: [{ kty: 'RSA', alg: 'RS256', use: 'sig', kid: String }] })
})

t.test('a scope other than Graph .default is invalid_scope', async (t) => {
  const res = await h.raw('POST', `/${h.sim.tenantId}/oauth2/v2.0/token`, {
    form: {
      grant_type: 'client_credentials',
      client_id: h.app.clientId,
      client_secret: h.app.clientSecret,
      scope: 'https://graph.microsoft.com/Presence.ReadWrite.All',
    },
  })
  t.equal(res.status, 400)
  t.match(res.body, { error: 'invalid_scope' })
})

t.test('an app without admin consent gets a token but Graph answers 403 → GRAPH_AUTH', async (t) => {
  const unconsented = h.sim.addApp({ roles: [] })
  const client = h.client({ clientId: unconsented.clientId, clientSecret: unconsented.clientSecret })
  const err = await graphError(() => client.setPresence(h.alice.id, { availability: 'Available', activity: 'Available' }, 5))
  t.equal(err.code, 'GRAPH_AUTH')
  t.equal(err.status, 403)
  t.match(err.message, /Grant admin consent/)
  t.match(err.message, /Presence\.ReadWrite\.All/)
})

// Graph-side token checks, with a clock the test moves by hand: token lifetimes follow the injected clock
// (advance() only moves presence time).
t.test('Graph endpoints check the bearer token', async (g) => {
  let clockMs = Date.now()
  const h = await startHarness({ clock: { now: () => clockMs } })
  g.teardown(() => h.close())

  g.test('a Graph request without a token is 401 InvalidAuthenticationToken in Graph error shape', async (t) => {
    const res = await h.raw('GET', `/v1.0/users/${h.alice.id}`)
    t.equal(res.status, 401)
    const error = graphErrorBody(res.body)
    t.equal(error.code, 'InvalidAuthenticationToken')
    t.equal(error.message, 'Access token is empty.')
    t.match(error.innerError, { date: String, 'request-id': String, 'client-request-id': String })
    t.match(res.headers.get('www-authenticate'), /^Bearer /)
    t.ok(res.headers.get('request-id'))
  })

  g.test('every Graph endpoint wants a token', async (t) => {
    const calls: Array<[string, string, unknown]> = [
      ['GET', '/v1.0/users', undefined],
      ['GET', `/v1.0/users/${h.alice.id}/presence`, undefined],
      ['GET', `/v1.0/communications/presences/${h.alice.id}`, undefined],
      ['POST', `/v1.0/users/${h.alice.id}/presence/setPresence`, { sessionId: h.app.clientId, availability: 'Available', activity: 'Available' }],
      ['POST', `/v1.0/users/${h.alice.id}/presence/clearPresence`, { sessionId: h.app.clientId }],
      ['POST', '/v1.0/communications/getPresencesByUserId', { ids: [h.alice.id] }],
    ]
    for (const [method, path, body] of calls) {
      const res = await h.raw(method, path, { body })
      t.equal(res.status, 401, `${method} ${path}`)
    }
    t.equal(h.sim.getSession(h.alice.id, h.app.clientId), undefined)
  })

  g.test('garbage and foreign tokens are refused', async (t) => {
    const garbage = await h.raw('GET', `/v1.0/users/${h.alice.id}`, { token: 'not.a.jwt' })
    t.equal(garbage.status, 401)
    t.equal(graphErrorBody(garbage.body).code, 'InvalidAuthenticationToken')

    // A token from another tenant's simulator: different signing key and tid.
    const other = await startHarness()
    t.teardown(() => other.close())
    const foreign = await h.raw('GET', `/v1.0/users/${h.alice.id}`, { token: await other.token() })
    t.equal(foreign.status, 401)
  })

  g.test("an expired token is refused; the client fetches a new one past msal's cache and carries on", async (t) => {
    const client = h.client()
    const issued: string[] = []
    const onToken = (e: { outcome: string }): void => {
      issued.push(e.outcome)
    }
    h.sim.on('token', onToken)
    t.teardown(() => h.sim.off('token', onToken))
    const statuses: number[] = []
    const onRequest = (e: { operation: string; status: number }): void => {
      if (e.operation === 'getUser') statuses.push(e.status)
    }
    h.sim.on('request', onRequest)
    t.teardown(() => h.sim.off('request', onRequest))

    const token = await h.token()
    t.equal((await client.findUser(h.alice.id))?.id, h.alice.id)
    clockMs += 3600 * 1000 // past expires_in (3599 s) on the simulator's clock; msal's clock did not move

    const expired = await h.raw('GET', `/v1.0/users/${h.alice.id}`, { token })
    t.equal(expired.status, 401)
    t.match(graphErrorBody(expired.body).message, /expired/)

    statuses.length = 0
    t.equal((await client.findUser(h.bob.id))?.id, h.bob.id)
    t.same(statuses, [401, 200], 'cached token refused once, then a fresh token worked')
    t.same(issued, ['issued', 'issued', 'issued'], 'raw token, first client token, renewed client token')
  })
})
