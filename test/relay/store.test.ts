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
