import t from 'tap'
import pino from 'pino'
import { systemClock, type Clock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { Relay } from '../../cloud-relay/src/app.js'
import { ConfigError, parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import { buildServer, type HttpServer } from '../../cloud-relay/src/http/server.js'
import { StoreExplainer } from '../../cloud-relay/src/http/store-explainer.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { openSqlClient, type SqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { createPostgresSchema } from '../helpers/postgres.js'
import { eventually } from '../helpers/eventually.js'

const logger = pino({ level: 'silent' })
const TOKEN = 'test-token-0123456789abcdefghijklmn'
const auth = { authorization: `Bearer ${TOKEN}` }
const NOW = Date.parse('2026-11-21T10:00:00Z')
const fixedClock: Clock = { now: () => NOW, setTimeout: systemClock.setTimeout, clearTimeout: systemClock.clearTimeout }
const iso = (ms: number) => new Date(ms).toISOString()
const MIN = 60_000

interface ApiEvent { id: number; at: string; tenantId: string | null; personId: number | null; gatewayId: string | null; kind: string; message: string; data: Record<string, unknown> | null }
interface EventsBody { events: ApiEvent[]; nextBefore: number | null }
interface ErrorReply { error: { code: string; message: string } }

async function openStore(backend: 'pglite' | 'postgres'): Promise<{ db: SqlClient; store: RelayStore; close: () => Promise<void> }> {
  const pgSchema = backend === 'postgres' ? await createPostgresSchema() : undefined
  const db = await openSqlClient({ databaseUrl: pgSchema?.url, dataDir: 'memory' }, logger)
  await migrate(db, logger)
  return {
    db,
    store: new RelayStore(db),
    close: async () => {
      await db.close()
      await pgSchema?.drop()
    },
  }
}

/** Two tenants, a gateway, Alice with an extension, a Teams session and a Teams reading, Bob with nothing. */
async function seed(store: RelayStore) {
  await store.upsertTenant('contoso', 'Contoso')
  await store.upsertTenant('fabrikam', 'Fabrikam')
  await store.upsertGateway({ id: 'gw1', tenantId: 'contoso', name: 'HQ', secretHash: null })
  const alice = await store.upsertPerson('contoso', 'alice@contoso.example', 'Alice Adams')
  await store.setPersonGraphUser(alice.id, 'aad-alice')
  const bob = await store.upsertPerson('fabrikam', 'bob@fabrikam.example', 'Bob Brown')
  await store.upsertEndpointDirectory({ gatewayId: 'gw1', connectorId: 'osbiz', endpointId: '201', name: 'Alice desk', email: 'alice@contoso.example', personId: alice.id })
  await store.updateEndpointState('gw1', { connectorId: 'osbiz', endpointId: '201', state: 'busy', calls: 1, dnd: true, dndOwner: 'gateway', changedAt: NOW - 5 * MIN, cause: 'call.connected' }, 7)
  await store.upsertTeamsSession({
    personId: alice.id,
    availability: 'DoNotDisturb',
    activity: 'Presenting',
    setAt: new Date(NOW - 5 * MIN),
    refreshedAt: new Date(NOW - MIN),
    expiresAt: new Date(NOW + 14 * MIN),
    reason: 'extension 201 on gw1/osbiz is busy (call.connected) since 09:55:00 UTC',
  })
  await store.upsertPersonSync({
    personId: alice.id,
    teamsAvailability: 'Busy',
    teamsActivity: 'InAConferenceCall',
    teamsObservedAt: new Date(NOW - 2 * MIN),
    teamsTrigger: true,
    teamsTriggerReason: 'Teams Busy/InAConferenceCall',
    standBackKeys: [],
  })
  return { alice, bob }
}

function server(store: RelayStore, db: SqlClient, apiToken: string | undefined): HttpServer {
  return buildServer({
    store,
    explainer: new StoreExplainer({ store, clock: fixedClock, gatewayOfflineGraceMs: 120_000 }),
    logger,
    apiToken,
    version: '9.9.9-test',
    health: () => ({ broker: true, store: db.kind }),
  })
}

for (const backend of ['pglite', 'postgres'] as const) {
  t.test(`admin API on ${backend}`, async (t) => {
    const { db, store, close } = await openStore(backend)
    t.teardown(close)
    const { alice, bob } = await seed(store)
    const app = server(store, db, TOKEN)
    t.teardown(() => app.close())

    const get = async (url: string, headers: Record<string, string> = auth) => {
      const res = await app.inject({ method: 'GET', url, headers })
      return { status: res.statusCode, headers: res.headers, body: res.json() as unknown }
    }
    const events = async (url: string) => {
      const res = await get(url)
      t.equal(res.status, 200, `${url} answers 200`)
      return res.body as EventsBody
    }
    const expectError = async (url: string, status: number, code: string, message: RegExp, headers: Record<string, string> = auth) => {
      const res = await get(url, headers)
      t.equal(res.status, status, `${url} answers ${status}`)
      t.equal((res.body as ErrorReply).error.code, code, `${url} has code ${code}`)
      t.match((res.body as ErrorReply).error.message, message, `${url}: ${(res.body as ErrorReply).error.message}`)
    }

    // Alice: at minutes 0..5 before NOW - 1h, with two at the same instant (ties are ordered by id).
    const base = NOW - 60 * MIN
    const aliceEvents = [
      { at: base, kind: 'pbx.dnd.on', data: { endpoint: '201' } },
      { at: base + MIN, kind: 'teams.set' },
      { at: base + 2 * MIN, kind: 'teams.settled' },
      { at: base + 3 * MIN, kind: 'teams.cleared' },
      { at: base + 4 * MIN, kind: 'pbx.dnd.stand_back' },
      { at: base + 4 * MIN, kind: 'pbx.dnd.off' },
    ]
    for (const e of aliceEvents) {
      await store.appendEvent({ at: new Date(e.at), tenantId: 'contoso', personId: alice.id, gatewayId: e.kind.startsWith('pbx.') ? 'gw1' : null, kind: e.kind, message: `alice ${e.kind}`, ...(e.data ? { data: e.data } : {}) })
    }
    // Appended out of time order: it must still come out by time.
    await store.appendEvent({ at: new Date(base - 30 * MIN), tenantId: 'contoso', personId: alice.id, kind: 'mapping.matched', message: 'alice mapped' })
    await store.appendEvent({ at: new Date(base + 2 * MIN), tenantId: 'fabrikam', personId: bob.id, kind: 'teams.set', message: 'bob teams.set' })
    await store.appendEvent({ at: new Date(base + 3 * MIN), tenantId: 'contoso', gatewayId: 'gw1', kind: 'gateway.offline', message: 'gw1 offline' })

    t.test('healthz needs no token', async (t) => {
      const res = await get('/healthz', {})
      t.equal(res.status, 200)
      t.same(res.body, { status: 'ok', version: '9.9.9-test', broker: true, store: backend })
    })

    t.test('auth', async (t) => {
      const missing = await get('/api/v1/people', {})
      t.equal(missing.status, 401)
      t.match(missing.headers['www-authenticate'], /^Bearer/)
      t.match(missing.body, { error: { code: 'HTTP_UNAUTHORIZED', message: /Authorization: Bearer/ } })
      await expectError('/api/v1/people', 401, 'HTTP_UNAUTHORIZED', /not valid/, { authorization: 'Bearer wrong-token-0123456789abcdef' })
      await expectError('/api/v1/people', 401, 'HTTP_UNAUTHORIZED', /not valid/, { authorization: `Bearer ${TOKEN}x` })
      await expectError('/api/v1/people', 401, 'HTTP_UNAUTHORIZED', /not a bearer token/, { authorization: `Basic ${TOKEN}` })
      await expectError(`/api/v1/people/${alice.id}/why`, 401, 'HTTP_UNAUTHORIZED', /Bearer/, {})
      await expectError(`/api/v1/events`, 401, 'HTTP_UNAUTHORIZED', /Bearer/, {})
      await expectError('/api/v1/openapi.json', 401, 'HTTP_UNAUTHORIZED', /Bearer/, {})
      // Unknown API paths do not tell an anonymous caller what exists.
      await expectError('/api/v1/nothing-here', 401, 'HTTP_UNAUTHORIZED', /Bearer/, {})
      await expectError('/api/v1/nothing-here', 404, 'HTTP_NOT_FOUND', /openapi\.json/)
      await expectError('/elsewhere', 404, 'HTTP_NOT_FOUND', /\/api\/v1/, {})
      t.equal((await get('/api/v1/people', { authorization: `bearer ${TOKEN}` })).status, 200, 'the scheme is case-insensitive')
    })

    t.test('without http.apiToken the API answers 503 and /healthz still works', async (t) => {
      const closed = server(store, db, undefined)
      t.teardown(() => closed.close())
      const res = await closed.inject({ method: 'GET', url: '/api/v1/people', headers: auth })
      t.equal(res.statusCode, 503)
      t.match(res.json(), { error: { code: 'HTTP_API_NOT_CONFIGURED', message: /set http\.apiToken/ } })
      t.equal((await closed.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
    })

    t.test('requests are logged once, at debug, without query or token', async (t) => {
      const capture = captureLogger('debug')
      const logged = buildServer({ store, explainer: new StoreExplainer({ store, clock: fixedClock, gatewayOfflineGraceMs: 120_000 }), logger: capture.logger, apiToken: TOKEN, version: 'x', health: () => ({ broker: false, store: db.kind }) })
      t.teardown(() => logged.close())
      await logged.inject({ method: 'GET', url: '/api/v1/events?kind=pbx.', headers: auth })
      await logged.inject({ method: 'GET', url: '/api/v1/events', headers: { authorization: 'Bearer not-the-token-at-all' } })
      const lines = capture.lines()
      t.same(lines.map((l) => [l.level, l.msg, l.component, l.url, l.statusCode]), [
        [20, 'http request', 'http', '/api/v1/events', 200],
        [20, 'http request', 'http', '/api/v1/events', 401],
      ])
      t.notMatch(JSON.stringify(lines), /not-the-token|test-token|pbx\./, 'no token or query in the log')
    })

    t.test('people', async (t) => {
      const all = await get('/api/v1/people')
      t.equal(all.status, 200)
      t.same(all.body, {
        people: [
          { id: alice.id, tenantId: 'contoso', email: 'alice@contoso.example', displayName: 'Alice Adams', syncMode: 'full' },
          { id: bob.id, tenantId: 'fabrikam', email: 'bob@fabrikam.example', displayName: 'Bob Brown', syncMode: 'full' },
        ],
      })
      t.same((await get('/api/v1/people?tenant=fabrikam')).body, { people: [{ id: bob.id, tenantId: 'fabrikam', email: 'bob@fabrikam.example', displayName: 'Bob Brown', syncMode: 'full' }] })
      t.same((await get('/api/v1/people?tenant=nobody')).body, { people: [] })
      await expectError('/api/v1/people?tenant=has%20space', 400, 'HTTP_BAD_REQUEST', /"tenant".*tenant id/)
    })

    t.test('why', async (t) => {
      const res = await get(`/api/v1/people/${alice.id}/why`)
      t.equal(res.status, 200)
      t.same(res.body, {
        person: { id: alice.id, tenantId: 'contoso', email: 'alice@contoso.example', displayName: 'Alice Adams', syncMode: 'full', graphUserId: 'aad-alice' },
        teams: {
          observed: { availability: 'Busy', activity: 'InAConferenceCall', at: iso(NOW - 2 * MIN) },
          ourSession: { availability: 'DoNotDisturb', activity: 'Presenting', setAt: iso(NOW - 5 * MIN), expiresAt: iso(NOW + 14 * MIN), reason: 'extension 201 on gw1/osbiz is busy (call.connected) since 09:55:00 UTC' },
          wantsPbxDnd: true,
          reason: 'Teams Busy/InAConferenceCall',
          standingBack: false,
        },
        endpoints: [{ gatewayId: 'gw1', connectorId: 'osbiz', endpointId: '201', name: 'Alice desk', state: 'busy', dnd: true, dndOwner: 'gateway', cause: 'call.connected', changedAt: iso(NOW - 5 * MIN), stale: false }],
        summary: [
          'Teams shows DoNotDisturb/Presenting, set by the relay since 09:55:00 UTC because extension 201 on gw1/osbiz is busy (call.connected) since 09:55:00 UTC; it expires at 10:14:00 UTC unless refreshed.',
          'Teams Busy/InAConferenceCall asks for DND on Alice Adams <alice@contoso.example>\'s extensions.',
          'Extension 201 on gw1/osbiz is busy since 09:55:00 UTC (call.connected); DND on, set by the relay.',
          'Teams was last read at 09:58:00 UTC: Busy/InAConferenceCall.',
        ],
      })

      const bobWhy = await get(`/api/v1/people/${bob.id}/why`)
      t.equal(bobWhy.status, 200)
      t.match(bobWhy.body, {
        teams: { observed: null, ourSession: null, wantsPbxDnd: false, reason: null, standingBack: false },
        endpoints: [],
        summary: [/no presence session/, /No PBX extension/, /No Microsoft 365 user/],
      })

      await expectError('/api/v1/people/999999/why', 404, 'HTTP_NOT_FOUND', /No person with id 999999.*GET \/api\/v1\/people/)
      await expectError('/api/v1/people/abc/why', 400, 'HTTP_BAD_REQUEST', /Path parameter "personId" must be integer: expected a person id/)
      await expectError('/api/v1/people/0/why', 400, 'HTTP_BAD_REQUEST', /"personId" must be >= 1/)
      await expectError('/api/v1/people/1.5/why', 400, 'HTTP_BAD_REQUEST', /"personId"/)
    })

    t.test('a person whose gateway is offline past the grace period, standing back', async (t) => {
      await store.setGatewayStatus('gw1', 'offline', 'connection lost', null, new Date(NOW - 10 * MIN))
      await store.upsertPersonSync({ personId: alice.id, teamsAvailability: 'Busy', teamsActivity: 'InAConferenceCall', teamsObservedAt: new Date(NOW - 2 * MIN), teamsTrigger: true, teamsTriggerReason: 'Teams Busy/InAConferenceCall', standBackKeys: ['gw1/osbiz/201'] })
      t.teardown(async () => {
        await store.setGatewayStatus('gw1', 'online', null, null, new Date(NOW))
        await store.upsertPersonSync({ personId: alice.id, teamsAvailability: 'Busy', teamsActivity: 'InAConferenceCall', teamsObservedAt: new Date(NOW - 2 * MIN), teamsTrigger: true, teamsTriggerReason: 'Teams Busy/InAConferenceCall', standBackKeys: [] })
      })
      const res = await get(`/api/v1/people/${alice.id}/why`)
      t.match(res.body, {
        teams: { standingBack: true },
        endpoints: [{ endpointId: '201', stale: true }],
        summary: [/Teams shows/, /asks for DND/, /switched off a DND the relay set on gw1\/osbiz\/201/, /offline since 09:50:00 UTC, so it does not count/],
      })
    })

    t.test('person events: newest first, by time then id', async (t) => {
      const body = await events(`/api/v1/people/${alice.id}/events`)
      t.same(body.events.map((e) => e.kind), ['pbx.dnd.off', 'pbx.dnd.stand_back', 'teams.cleared', 'teams.settled', 'teams.set', 'pbx.dnd.on', 'mapping.matched'])
      t.equal(body.nextBefore, null, 'one page holds them all')
      const first = body.events.find((e) => e.kind === 'pbx.dnd.on')
      t.same(first, { id: first?.id, at: iso(base), tenantId: 'contoso', personId: alice.id, gatewayId: 'gw1', kind: 'pbx.dnd.on', message: 'alice pbx.dnd.on', data: { endpoint: '201' } })
      t.same((await events(`/api/v1/people/${bob.id}/events`)).events.map((e) => e.message), ['bob teams.set'])
      await expectError('/api/v1/people/999999/events', 404, 'HTTP_NOT_FOUND', /No person with id 999999/)
    })

    t.test('time range: from inclusive, to exclusive', async (t) => {
      const body = await events(`/api/v1/people/${alice.id}/events?from=${iso(base + MIN)}&to=${iso(base + 4 * MIN)}`)
      t.same(body.events.map((e) => e.kind), ['teams.cleared', 'teams.settled', 'teams.set'])
      t.same((await events(`/api/v1/people/${alice.id}/events?from=${iso(base + 4 * MIN)}`)).events.map((e) => e.kind), ['pbx.dnd.off', 'pbx.dnd.stand_back'])
      t.same((await events(`/api/v1/people/${alice.id}/events?to=${iso(base)}`)).events.map((e) => e.kind), ['mapping.matched'])
      // Offsets other than Z are the same instant.
      t.same((await events(`/api/v1/people/${alice.id}/events?from=${encodeURIComponent('2026-11-21T10:04:00+01:00')}`)).events.map((e) => e.kind), ['pbx.dnd.off', 'pbx.dnd.stand_back'])
    })

    t.test('kind prefix, taken literally', async (t) => {
      t.same((await events(`/api/v1/people/${alice.id}/events?kind=pbx.`)).events.map((e) => e.kind), ['pbx.dnd.off', 'pbx.dnd.stand_back', 'pbx.dnd.on'])
      t.same((await events(`/api/v1/people/${alice.id}/events?kind=teams.set`)).events.map((e) => e.kind), ['teams.settled', 'teams.set'])
      t.same((await events(`/api/v1/people/${alice.id}/events?kind=teams.cleared`)).events.map((e) => e.kind), ['teams.cleared'])
      t.same((await events(`/api/v1/people/${alice.id}/events?kind=pbx_`)).events, [], '_ is not a wildcard')
      t.same((await events(`/api/v1/people/${alice.id}/events?kind=pbx.dnd.stand_`)).events.map((e) => e.kind), ['pbx.dnd.stand_back'])
      await expectError(`/api/v1/people/${alice.id}/events?kind=pbx%25`, 400, 'HTTP_BAD_REQUEST', /"kind".*kind prefix/)
    })

    t.test('paging with the cursor', async (t) => {
      const all = (await events(`/api/v1/people/${alice.id}/events`)).events.map((e) => e.id)
      const seen: number[] = []
      let url = `/api/v1/people/${alice.id}/events?limit=2`
      let pages = 0
      for (;;) {
        const page = await events(url)
        pages++
        t.ok(page.events.length <= 2)
        seen.push(...page.events.map((e) => e.id))
        if (page.nextBefore === null) break
        t.equal(page.nextBefore, page.events[page.events.length - 1]?.id, 'the cursor is the last id of the page')
        url = `/api/v1/people/${alice.id}/events?limit=2&before=${page.nextBefore}`
      }
      t.equal(pages, 4, '7 events in pages of 2')
      t.same(seen, all, 'the pages together are the whole list, in order, without repeats')
      // The cursor works with the other filters.
      const pbx1 = await events(`/api/v1/people/${alice.id}/events?kind=pbx.&limit=1`)
      t.same(pbx1.events.map((e) => e.kind), ['pbx.dnd.off'])
      const pbx2 = await events(`/api/v1/people/${alice.id}/events?kind=pbx.&limit=2&before=${pbx1.nextBefore}`)
      t.same(pbx2.events.map((e) => e.kind), ['pbx.dnd.stand_back', 'pbx.dnd.on'])
      t.equal(pbx2.nextBefore, null)
      const exact = await events(`/api/v1/people/${alice.id}/events?limit=7`)
      t.equal(exact.nextBefore, null, 'no next page when the page holds exactly the rest')
      t.same((await events(`/api/v1/people/${alice.id}/events?before=99999999`)).events, [], 'an unknown cursor gives nothing')
      await expectError(`/api/v1/people/${alice.id}/events?before=abc`, 400, 'HTTP_BAD_REQUEST', /"before".*cursor/)
    })

    t.test('bad dates and ranges', async (t) => {
      await expectError(`/api/v1/people/${alice.id}/events?from=yesterday`, 400, 'HTTP_BAD_REQUEST', /Query parameter "from" must match format "date-time": expected start of the range.*ISO 8601.*2026-11-21T09:00:00Z/)
      await expectError(`/api/v1/people/${alice.id}/events?to=2026-13-45T00:00:00Z`, 400, 'HTTP_BAD_REQUEST', /"to".*ISO 8601/)
      await expectError(`/api/v1/people/${alice.id}/events?from=2026-11-21T09:00:00`, 400, 'HTTP_BAD_REQUEST', /"from".*time zone/)
      await expectError(`/api/v1/events?from=${iso(base)}&to=${iso(base)}`, 400, 'HTTP_BAD_REQUEST', /"to" .* must be after "from"/)
      await expectError(`/api/v1/events?from=${iso(base)}&to=${iso(base - MIN)}`, 400, 'HTTP_BAD_REQUEST', /swap them/)
      await expectError(`/api/v1/events?form=${iso(base)}`, 400, 'HTTP_BAD_REQUEST', /Query parameter "form" is not known here: use tenant, from, to, limit, kind, before/)
    })

    t.test('limit bounds', async (t) => {
      await expectError(`/api/v1/events?limit=0`, 400, 'HTTP_BAD_REQUEST', /"limit" must be >= 1: expected events per page, 1 to 1000/)
      await expectError(`/api/v1/events?limit=1001`, 400, 'HTTP_BAD_REQUEST', /"limit" must be <= 1000/)
      await expectError(`/api/v1/events?limit=ten`, 400, 'HTTP_BAD_REQUEST', /"limit" must be integer/)
      t.equal((await events(`/api/v1/events?limit=1`)).events.length, 1)
      t.equal((await events(`/api/v1/events?limit=1000`)).events.length, 9)
    })

    t.test('events across people', async (t) => {
      const all = await events('/api/v1/events')
      t.equal(all.events.length, 9)
      // Same instant: the later row (gw1 offline) first.
      t.same(all.events.slice(0, 4).map((e) => e.message), ['alice pbx.dnd.off', 'alice pbx.dnd.stand_back', 'gw1 offline', 'alice teams.cleared'])
      const contoso = await events('/api/v1/events?tenant=contoso')
      t.equal(contoso.events.length, 8)
      t.notOk(contoso.events.some((e) => e.tenantId !== 'contoso'))
      t.same((await events('/api/v1/events?tenant=fabrikam')).events.map((e) => e.message), ['bob teams.set'])
      t.same((await events(`/api/v1/events?tenant=contoso&kind=gateway.&from=${iso(base)}`)).events.map((e) => e.message), ['gw1 offline'])
      const gatewayEvent = all.events.find((e) => e.kind === 'gateway.offline')
      t.match(gatewayEvent, { personId: null, gatewayId: 'gw1', data: null })
    })

    t.test('default page size is 200', async (t) => {
      await db.query(
        `INSERT INTO event_log (at, tenant_id, kind, message) SELECT $1::timestamptz - make_interval(secs => g), 'bulk', 'bulk.entry', 'bulk ' || g FROM generate_series(1, 205) AS g`,
        [new Date(base - 120 * MIN)],
      )
      const first = await events('/api/v1/events?tenant=bulk')
      t.equal(first.events.length, 200)
      t.equal(first.events[0]?.message, 'bulk 1')
      t.not(first.nextBefore, null)
      const rest = await events(`/api/v1/events?tenant=bulk&before=${first.nextBefore}`)
      t.same(rest.events.map((e) => e.message), ['bulk 201', 'bulk 202', 'bulk 203', 'bulk 204', 'bulk 205'])
      t.equal(rest.nextBefore, null)
    })

    t.test('OpenAPI document from the route schemas', async (t) => {
      const res = await get('/api/v1/openapi.json')
      t.equal(res.status, 200)
      const doc = res.body as { openapi: string; info: { version: string }; paths: Record<string, { get?: { parameters?: Array<{ name: string; in: string; required?: boolean }>; security?: unknown; responses?: Record<string, unknown> } }> }
      t.equal(doc.openapi, '3.1.0')
      t.equal(doc.info.version, '9.9.9-test')
      t.same(Object.keys(doc.paths).sort(), ['/api/v1/events', '/api/v1/people', '/api/v1/people/{personId}/events', '/api/v1/people/{personId}/why', '/healthz'])
      const eventsOp = doc.paths['/api/v1/events']?.get
      t.same(eventsOp?.parameters?.map((p) => `${p.in}:${p.name}`).sort(), ['query:before', 'query:from', 'query:kind', 'query:limit', 'query:tenant', 'query:to'])
      t.equal(eventsOp?.parameters?.find((p) => p.name === 'limit')?.required, false, 'limit has a default, so it is not required')
      t.same(eventsOp?.security, [{ bearer: [] }])
      t.ok(eventsOp?.responses?.['400'], 'error answers are documented')
      t.ok(doc.paths['/api/v1/people/{personId}/why']?.get?.responses?.['404'])
    })
  })
}

t.test('a failing explainer is a 500 with a stable code, logged at error', async (t) => {
  const capture = captureLogger('debug')
  const app = buildServer({
    store: { queryEvents: async () => [], getPerson: async () => undefined },
    explainer: { explain: () => { throw new Error('store connection lost') }, listPeople: () => [] },
    logger: capture.logger,
    apiToken: TOKEN,
    version: 'x',
    health: () => ({ broker: false, store: 'pglite' }),
  })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'GET', url: '/api/v1/people/1/why', headers: auth })
  t.equal(res.statusCode, 500)
  t.match(res.json(), { error: { code: 'HTTP_INTERNAL', message: /relay's log has the details/ } })
  t.notMatch(res.body, /store connection lost/, 'internals stay in the log')
  t.match(capture.lines().filter((l) => l.level === 50), [{ component: 'http', msg: 'request failed', err: { message: 'store connection lost' } }])
})

t.test('http and eventLog config: defaults keep existing configs valid, bad values are refused', async (t) => {
  const config = parseRelayConfig({ broker: { relayPassword: 'secret' } })
  t.same(config.http, { host: '127.0.0.1', port: 8080, trustProxy: false })
  t.same(config.eventLog, { retentionDays: 30 })
  t.equal(parseRelayConfig({ broker: { relayPassword: 'secret' }, http: { port: 0, apiToken: TOKEN } }).http.apiToken, TOKEN)
  t.throws(() => parseRelayConfig({ broker: { relayPassword: 'secret' }, http: { apiToken: 'short' } }), ConfigError)
  t.throws(() => parseRelayConfig({ broker: { relayPassword: 'secret' }, http: { port: 70000 } }), ConfigError)
  t.throws(() => parseRelayConfig({ broker: { relayPassword: 'secret' }, eventLog: { retentionDays: 0 } }), ConfigError)
})

t.test('the Relay serves the API on its configured port and stops it', async (t) => {
  const config = parseRelayConfig({
    logLevel: 'silent',
    broker: { mode: 'embedded', host: '127.0.0.1', port: 0, relayPassword: 'relay-secret', passwordListener: true },
    database: { pgliteDir: 'memory' },
    http: { port: 0, apiToken: TOKEN },
    tenants: [{ id: 'contoso', name: 'Contoso', gateways: [{ id: 'gw1', password: 'gateway-secret' }] }],
  })
  const relay = new Relay(config, { logger, clock: systemClock, counters: new Counters() })
  t.equal(relay.httpPort, undefined, 'nothing listens before start')
  await relay.start()
  t.teardown(() => relay.stop())
  const port = relay.httpPort
  t.ok(port && port > 0, `listening on ${port}`)
  const health = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.same(await health.json(), { status: 'ok', version: '0.1.0', broker: true, store: 'pglite' })
  // A person becomes known the way the product learns of people: from a gateway's PBX directory.
  await relay.engine.onDirectory('gw1', { connectorId: 'pbx', entries: [{ endpointId: '203', name: 'Carol', email: 'carol@contoso.example' }] })
  const person = relay.engine.personByEmail('contoso', 'carol@contoso.example')!.row
  const why = await fetch(`http://127.0.0.1:${port}/api/v1/people/${person.id}/why`, { headers: auth })
  t.equal(why.status, 200)
  t.match(await why.json(), { person: { email: 'carol@contoso.example' }, summary: [/no presence session/] })
  t.equal((await fetch(`http://127.0.0.1:${port}/api/v1/people`)).status, 401)

  // An admin sets carol to telephony-only with her own busy presence; the answer is the new "why".
  const put = (id: number, body: unknown) => fetch(`http://127.0.0.1:${port}/api/v1/people/${id}/sync`, { method: 'PUT', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const changed = await put(person.id, { syncMode: 'telephony', settings: { busyPresence: 'Busy/InACall' } })
  t.equal(changed.status, 200)
  t.match(await changed.json(), { person: { syncMode: 'telephony' } })
  t.same(relay.engine.person(person.id)?.row.settingsOverride, { busyPresence: 'Busy/InACall' }, 'the engine uses it at once')
  t.same((await relay.store.getPerson(person.id))?.syncMode, 'telephony', 'and it is stored')
  // Event log lines reach the store through the write-behind batch (every 20 ms), so the read waits for it.
  const adminLine = /an admin \(API\) set sync mode telephony and own settings/
  const logged = await eventually(async () => (await relay.store.listEvents({ personId: person.id })).find((e) => adminLine.test(e.message)), 'the admin change in the event log')
  t.match(logged.message, adminLine, 'the change is in the event log')
  t.equal((await put(person.id, { syncMode: 'sometimes' })).status, 400, 'an unknown sync mode is refused')
  t.equal((await put(person.id, {})).status, 400, 'an empty change is refused')
  t.equal((await put(person.id, { settings: { colour: 'red' } })).status, 400, 'an unknown setting is refused')
  t.equal((await put(999_999, { syncMode: 'off' })).status, 404)
  const cleared = await put(person.id, { settings: null })
  t.equal(cleared.status, 200)
  t.equal(relay.engine.person(person.id)?.row.settingsOverride, null, 'null removes her own settings')
  await relay.stop()
  t.equal(relay.httpPort, undefined)
  await t.rejects(fetch(`http://127.0.0.1:${port}/healthz`), 'the port is closed after stop')
  await relay.stop()
})
