import t from 'tap'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { openSqlClient, type SqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { WriteBehindSyncStore } from '../../cloud-relay/src/store/write-behind-store.js'
import type { EndpointData } from '../../gateway/protocol/schemas.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { FaultProxy } from '../helpers/fault-proxy.js'
import { POSTGRES_ADMIN_URL, createPostgresSchema } from '../helpers/postgres.js'
import type { TapTest } from '../helpers/tap-types.js'

const state = (endpointId: string, change: Partial<EndpointData> = {}): EndpointData =>
  ({ connectorId: 'pbx1', endpointId, state: 'busy', calls: 1, dnd: false, dndOwner: null, changedAt: Date.now(), cause: 'call.connected', ...change })

/** A real database, counted: every statement the store sends is one attempt. */
function counted(db: SqlClient): SqlClient & { statements: number } {
  const wrapped = {
    kind: db.kind,
    statements: 0,
    query: <Row extends Record<string, unknown>>(sql: string, params?: readonly unknown[]) => {
      wrapped.statements++
      return db.query<Row>(sql, params)
    },
    exec: (sql: string) => db.exec(sql),
    close: () => db.close(),
  }
  return wrapped
}

async function world(db: SqlClient) {
  const { logger, lines } = captureLogger('info')
  await migrate(db, logger)
  const inner = new RelayStore(db)
  for (const tenant of ['tenant-a', 'tenant-b']) await inner.upsertTenant(tenant, tenant)
  await inner.upsertGateway({ id: 'gw-a', tenantId: 'tenant-a', name: '', secretHash: null })
  await inner.upsertGateway({ id: 'gw-b', tenantId: 'tenant-b', name: '', secretHash: null })
  const alice = await inner.upsertPerson('tenant-a', 'alice@a.example', 'Alice')
  const bob = await inner.upsertPerson('tenant-b', 'bob@b.example', 'Bob')
  const store = new WriteBehindSyncStore(inner, { flushMs: 10 }, logger)
  return { inner, store, lines, alice, bob }
}

for (const backend of ['pglite', 'postgres'] as const) {
  t.test(`on ${backend}: a row the database refuses is set aside once; every good row of both tenants lands; nothing spins`, async (t) => {
    const pg = backend === 'postgres' ? await createPostgresSchema() : undefined
    const db = counted(await openSqlClient({ databaseUrl: pg?.url, dataDir: 'memory' }, captureLogger().logger))
    t.teardown(async () => {
      await db.close()
      await pg?.drop()
    })
    const { inner, store, lines, alice, bob } = await world(db)

    // Good rows of two tenants, with rows the database (or the driver) refuses among them. The schema is bypassed:
    // these reach the store as a bug or a future path might hand them over.
    for (let i = 0; i < 40; i++) await store.updateEndpointState(i % 2 ? 'gw-a' : 'gw-b', state(`good-${i}`), 100 + i)
    await store.updateEndpointState('gw-a', state('poison-time', { changedAt: 9007199254740993 }), 500)
    await store.updateEndpointState('gw-b', state('poison-calls', { calls: 3_000_000_000 }), 501)
    for (let i = 40; i < 60; i++) await store.updateEndpointState(i % 2 ? 'gw-a' : 'gw-b', state(`good-${i}`), 100 + i)
    await store.appendEvent({ kind: 'pbx.observed', message: 'tenant a event', tenantId: 'tenant-a', personId: alice.id })
    await store.appendEvent({ kind: 'pbx.observed', message: 'a NUL \u0000 PostgreSQL refuses', tenantId: 'tenant-b', personId: bob.id })
    await store.appendEvent({ kind: 'pbx.observed', message: 'tenant b event', tenantId: 'tenant-b', personId: bob.id })
    await store.upsertTeamsSession({ personId: 999_999, availability: 'Busy', activity: 'InACall', setAt: new Date(), refreshedAt: new Date(), expiresAt: new Date(), reason: 'a person that is gone' })
    await store.upsertTeamsSession({ personId: bob.id, availability: 'Busy', activity: 'InACall', setAt: new Date(), refreshedAt: new Date(), expiresAt: new Date(Date.now() + 60_000), reason: 'call' })
    // An admin's change that used to be lost at shutdown behind the stuck batch.
    await store.upsertPersonSync({ personId: alice.id, teamsAvailability: 'Available', teamsActivity: 'Available', teamsObservedAt: new Date(), teamsTrigger: false, teamsTriggerReason: null, standBackKeys: [] })
    const before = db.statements
    await store.flush()
    const statements = db.statements - before

    const endpoints = await inner.listEndpoints()
    t.equal(endpoints.length, 60, 'all 60 good endpoint rows landed')
    t.same([...new Set(endpoints.map((e) => e.gatewayId))].sort(), ['gw-a', 'gw-b'], 'for both tenants')
    t.notOk(endpoints.some((e) => e.endpointId.startsWith('poison')), 'no poison row')
    const events = await inner.listEvents({ limit: 100 })
    t.same(events.map((e) => e.message).sort(), ['tenant a event', 'tenant b event'], 'the good events landed')
    t.same((await inner.listTeamsSessions()).map((s) => s.personId), [bob.id], 'the good session landed')
    t.equal((await inner.listPersonSync())[0]?.teamsAvailability, 'Available', "the admin's change landed")

    const stats = store.stats()
    t.equal(stats.quarantined, 4, 'four rows set aside')
    t.equal(stats.queued, 0, 'nothing left to retry')
    const set = lines().filter((l) => l.msg === 'a row the database refuses was set aside; the rest were written')
    t.equal(set.length, 4, 'one log line per refused row')
    t.match(set.find((l) => l.table === 'endpoints' && String(l.row).includes('poison-time')), { reason: /Invalid time value/ }, 'saying which row and what was wrong')
    t.ok(set.some((l) => l.table === 'endpoints' && String(l.row).includes('poison-calls')), 'the out-of-range count')
    t.ok(set.some((l) => l.table === 'event_log'), 'the event the database refused')
    t.ok(set.some((l) => l.table === 'teams_sessions' && String(l.row).includes('999999')), 'the session of a person that is gone')
    t.ok(statements <= 40, `the batch was isolated in a bounded number of statements (${statements})`)
    const idle = db.statements
    await store.flush()
    await new Promise((resolve) => setTimeout(resolve, 100)) // ten flush periods
    t.equal(db.statements, idle, 'no retry of a refused row: the writer is idle')
    // The writer keeps working.
    await store.updateEndpointState('gw-b', state('after'), 900)
    await store.flush()
    t.ok((await inner.listEndpoints()).some((e) => e.endpointId === 'after'), 'a good row after the poison lands')
  })
}

t.test('on postgres: a lost database connection loses nothing; the writer backs off and writes everything once it is back', async (t) => {
  const pg = await createPostgresSchema()
  const target = new URL(POSTGRES_ADMIN_URL)
  const proxy = await FaultProxy.start({ host: target.hostname, port: Number(target.port || 5432) })
  const viaProxy = new URL(pg.url)
  viaProxy.host = `127.0.0.1:${proxy.port}`
  const db = await openSqlClient({ databaseUrl: viaProxy.toString(), dataDir: 'memory' }, captureLogger().logger)
  t.teardown(async () => {
    await db.close()
    await proxy.close()
    await pg.drop()
  })
  const { inner, store, lines, alice } = await world(db)
  for (let i = 0; i < 40; i++) await store.updateEndpointState(i % 2 ? 'gw-a' : 'gw-b', state(`e-${i}`, { state: 'idle', calls: 0 }), 10 + i)
  await store.flush()
  proxy.cut()
  for (let i = 20; i < 40; i++) await store.updateEndpointState(i % 2 ? 'gw-a' : 'gw-b', state(`e-${i}`), 100 + i)
  await store.appendEvent({ kind: 'k', message: 'written while the database was away', tenantId: 'tenant-a', personId: alice.id })
  await store.flush()
  const during = store.stats()
  t.ok(during.transientFailures >= 1, 'the failure is seen as the connection, not the rows')
  t.equal(during.queued, 21, 'all 21 rows are kept for later')
  t.equal(during.quarantined, 0, 'none is set aside')
  t.ok(lines().some((l) => l.msg === 'the database is not reachable; the queued writes are kept and retried with backoff'), 'said in the log')
  proxy.restore()
  t.equal(await store.drain(30_000), true, 'drained once the database is back')
  const endpoints = await inner.listEndpoints()
  t.equal(endpoints.length, 40)
  t.equal(endpoints.filter((e) => e.state === 'busy').length, 20, 'every change made while the database was away landed')
  t.equal((await inner.listEvents({ limit: 10 })).length, 1, 'the event landed once')
  t.equal(store.stats().quarantined, 0)
})
