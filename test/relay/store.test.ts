import t from 'tap'
import pino from 'pino'
import { openSqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { MIGRATIONS } from '../../cloud-relay/src/store/migrations.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { createPostgresSchema } from '../helpers/postgres.js'

const logger = pino({ level: 'silent' })

for (const backend of ['pglite', 'postgres'] as const) {
  t.test(`store on ${backend}`, async (t) => {
    const pgSchema = backend === 'postgres' ? await createPostgresSchema() : undefined
    const db = await openSqlClient({ databaseUrl: pgSchema?.url, dataDir: 'memory' }, logger)
    t.teardown(async () => {
      await db.close()
      await pgSchema?.drop()
    })
    t.equal(db.kind, backend)
    t.equal(await migrate(db, logger), MIGRATIONS.length, 'first run applies every migration')
    t.equal(await migrate(db, logger), 0, 'second run applies nothing')
    const store = new RelayStore(db)
    await store.upsertTenant('contoso', 'Contoso')
    await store.upsertGateway({ id: 'gw1', tenantId: 'contoso', name: 'HQ', secretHash: null })
    t.equal(await store.reserveCommandSeq('gw1', 100), 1)
    t.equal(await store.reserveCommandSeq('gw1', 100), 101, 'blocks do not overlap')

    const alice = await store.upsertPerson('contoso', 'Alice@Contoso.example', 'Alice')
    t.equal(alice.email, 'alice@contoso.example', 'e-mails are stored lower-case')
    const again = await store.upsertPerson('contoso', 'alice@contoso.example', '')
    t.equal(again.id, alice.id)
    t.equal(again.displayName, 'Alice', 'an empty name does not overwrite a known one')

    const base = { connectorId: 'osbiz', endpointId: '201', calls: 1, dnd: false, dndOwner: null, changedAt: 1000, cause: 'call.connected' } as const
    t.equal(await store.updateEndpointState('gw1', { ...base, state: 'busy' }, 5), true)
    t.equal(await store.updateEndpointState('gw1', { ...base, state: 'idle', calls: 0 }, 4), false, 'an older seq is ignored')
    t.equal(await store.updateEndpointState('gw1', { ...base, state: 'busy' }, 5), false, 'a redelivered seq is ignored')
    await store.upsertEndpointDirectory({ gatewayId: 'gw1', connectorId: 'osbiz', endpointId: '201', name: 'Alice', email: 'alice@contoso.example', personId: alice.id })
    const [endpoint] = await store.listEndpoints()
    t.match(endpoint, { state: 'busy', lastSeq: 5, personId: alice.id, name: 'Alice' })

    await store.appendEvent({ kind: 'teams.set', message: 'test entry', personId: alice.id, data: { a: 1 } })
    const events = await store.listEvents({ personId: alice.id })
    t.equal(events.length, 1)
    t.same(events[0]?.data, { a: 1 })
    t.equal((await store.listEvents({ personId: alice.id + 1 })).length, 0)
  })
}

for (const backend of ['pglite', 'postgres'] as const) {
  t.test(`write-behind store on ${backend}: batched writes land with the same rules`, async (t) => {
    const { WriteBehindSyncStore } = await import('../../cloud-relay/src/store/write-behind-store.js')
    const pgSchema = backend === 'postgres' ? await createPostgresSchema() : undefined
    const db = await openSqlClient({ databaseUrl: pgSchema?.url, dataDir: 'memory' }, logger)
    t.teardown(async () => {
      await db.close()
      await pgSchema?.drop()
    })
    await migrate(db, logger)
    const inner = new RelayStore(db)
    await inner.upsertTenant('t', 'T')
    await inner.upsertGateway({ id: 'gw', tenantId: 't', name: '', secretHash: null })
    const person = await inner.upsertPerson('t', 'a@t.example', 'A')
    const store = new WriteBehindSyncStore(inner, { flushMs: 10 }, logger)
    const ep = (state: 'idle' | 'busy', owner: 'gateway' | 'user' | null = null) => ({ connectorId: 'c', endpointId: '1', state, calls: state === 'busy' ? 1 : 0, dnd: owner !== null, dndOwner: owner, changedAt: 5000, cause: 'x' })
    t.equal(await store.updateEndpointState('gw', ep('busy'), 10), true)
    t.equal(await store.updateEndpointState('gw', ep('idle'), 9), false, 'an older seq is refused without a round trip')
    t.equal(await store.updateEndpointState('gw', ep('idle', 'user'), 11), true)
    await store.upsertTeamsSession({ personId: person.id, availability: 'DoNotDisturb', activity: 'Presenting', setAt: new Date(1000), refreshedAt: new Date(2000), expiresAt: new Date(3000), reason: 'r' })
    await store.upsertPersonSync({ personId: person.id, teamsAvailability: 'Busy', teamsActivity: 'InACall', teamsObservedAt: new Date(4000), teamsTrigger: true, teamsTriggerReason: 'why', standBackKeys: ['gw/c/1'] })
    for (let i = 0; i < 250; i++) await store.appendEvent({ kind: 'k', message: `m${i}`, personId: person.id, tenantId: 't', data: { i, quote: 'he said "hi", {x}' } })
    t.equal((await inner.listEvents({ personId: person.id, limit: 1000 })).length, 0, 'nothing written before the flush')
    await store.flush()
    const [row] = await inner.listEndpoints()
    t.match(row, { state: 'idle', dnd: true, dndOwner: 'user', lastSeq: 11 }, 'the latest state per endpoint, coalesced')
    t.match((await inner.listTeamsSessions())[0], { availability: 'DoNotDisturb', expiresAt: new Date(3000) })
    t.same((await inner.listPersonSync())[0]?.standBackKeys, ['gw/c/1'])
    const events = await inner.listEvents({ personId: person.id, limit: 1000 })
    t.equal(events.length, 250, 'every event, in one statement')
    t.same(events.find((e) => e.message === 'm7')?.data, { i: 7, quote: 'he said "hi", {x}' }, 'JSON data survives the array round trip')
    await store.deleteTeamsSession(person.id)
    await store.flush()
    t.equal((await inner.listTeamsSessions()).length, 0)
    // A new process: the stored seq is read once and still orders events.
    const fresh = new WriteBehindSyncStore(inner, { flushMs: 10 }, logger)
    t.equal(await fresh.updateEndpointState('gw', ep('busy'), 11), false, 'the stored seq is respected after a restart')
    t.equal(await fresh.updateEndpointState('gw', ep('busy'), 12), true)
    await fresh.flush()
  })
}
