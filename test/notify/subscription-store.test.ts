import t from 'tap'
import { pino } from 'pino'
import { migrate } from '../../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../../cloud-relay/src/store/relay-store.js'
import { openSqlClient, type SqlClient } from '../../cloud-relay/src/store/sql-client.js'
import { SubscriptionStore } from '../../cloud-relay/src/store/subscription-store.js'
import { createPostgresSchema } from '../helpers/postgres.js'
import type { TapTest } from '../helpers/tap-types.js'

const logger = pino({ level: 'silent' })

async function suite(t: TapTest, db: SqlClient): Promise<void> {
  await migrate(db, logger)
  await new RelayStore(db).upsertTenant('contoso', 'Contoso')
  const store = new SubscriptionStore(db)
  const at = new Date('2026-11-21T10:00:00Z')
  const account = await store.upsertAccount({ id: 'a1', tenantId: 'contoso', username: 'sync@contoso.example', homeAccountId: 'oid.tid', state: 'ok', reason: null, action: null, tokenCache: 'sealed-1' }, at)
  t.equal(account.id, 'a1')
  // Signing the same person in again updates the row, keeping its id.
  const again = await store.upsertAccount({ id: 'a2', tenantId: 'contoso', username: 'sync@contoso.example', homeAccountId: 'oid.tid', state: 'ok', reason: null, action: null, tokenCache: 'sealed-2' }, at)
  t.equal(again.id, 'a1')
  await store.setAccountState('a1', 'needs-sign-in', 'refresh token expired', 'sign in again', at)
  await store.saveTokenCache('a1', 'sealed-3', at)
  t.match(await store.listAccounts('contoso'), [{ id: 'a1', state: 'needs-sign-in', reason: 'refresh token expired', tokenCache: 'sealed-3' }])

  const members = ['u1', 'u2']
  await store.upsertSubscription({ id: 's1', tenantId: 'contoso', accountId: 'a1', members, clientState: 'cs', certificateId: 'c1', expiresAt: new Date('2026-11-21T10:55:00Z') }, at)
  // One subscription per account: a new one replaces it.
  await store.upsertSubscription({ id: 's2', tenantId: 'contoso', accountId: 'a1', members: ['u3'], clientState: 'cs2', certificateId: 'c1', expiresAt: new Date('2026-11-21T10:56:00Z') }, at)
  await store.renewSubscription('s2', new Date('2026-11-21T11:50:00Z'), at)
  const subs = await store.listSubscriptions('contoso')
  t.equal(subs.length, 1)
  t.match(subs[0], { id: 's2', members: ['u3'], clientState: 'cs2', expiresAt: new Date('2026-11-21T11:50:00Z') })

  await store.insertCertificate({ id: 'c1', certificatePem: 'pem', privateKey: 'sealed-key', notAfter: new Date('2027-11-21T00:00:00Z') })
  await store.insertCertificate({ id: 'c2', certificatePem: 'pem2', privateKey: 'sealed-key2', notAfter: new Date('2028-11-21T00:00:00Z') })
  t.equal((await store.latestCertificate())?.id, 'c2')

  t.equal(await store.readSealCheck(), undefined)
  await store.writeSealCheck('x')
  await store.writeSealCheck('y')
  t.equal(await store.readSealCheck(), 'x', 'written once')

  t.ok(await store.deleteAccount('a1'))
  t.same(await store.listSubscriptions(), [], 'its subscription went with it')
}

t.test('PGlite', async (t) => {
  const db = await openSqlClient({ dataDir: 'memory' }, logger)
  t.teardown(() => db.close())
  await suite(t, db)
})

t.test('PostgreSQL', async (t) => {
  const schema = await createPostgresSchema()
  const db = await openSqlClient({ databaseUrl: schema.url, dataDir: 'memory' }, logger)
  t.teardown(async () => {
    await db.close()
    await schema.drop()
  })
  await suite(t, db)
})
