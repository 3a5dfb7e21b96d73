import t from 'tap'
import { captureLogger } from '../helpers/capture-logger.js'
import { TENANT, manyUsers, startImportWorld } from './fixtures/import-world.js'

// 2,500 Entra users; the filters (enabled, one domain, three departments) leave more than one 999-user page.
const users = manyUsers(2500)
const expected = users.filter((u) => u.accountEnabled !== false && u.userPrincipalName.endsWith('@contoso.example') && ['Sales', 'Support', 'Engineering'].includes(u.department ?? ''))

t.test('an import of 2,500 users across pages with filters: the dry run changes nothing, the real run matches its figures', async (t) => {
  const { logger, lines } = captureLogger('info')
  const w = await startImportWorld({ users, logger, settings: { domains: ['contoso.example'], departments: ['Sales', 'Support', 'Engineering'] } })
  t.teardown(() => w.close())
  t.ok(expected.length > 999, `the filtered set (${expected.length}) needs more than one page`)

  const dry = await w.runImport(true)
  t.equal(dry.state, 'succeeded', dry.error ?? '')
  t.equal(dry.result?.counts.matched, expected.length)
  t.equal(dry.result?.counts.added, expected.length)
  t.same(dry.progress, { phase: 'done', pages: 2, fetched: expected.length, total: expected.length, percent: 100 }, 'progress: pages, users read, @odata.count')
  t.equal((await w.directoryStore.listTenantPeople(TENANT)).length, 0, 'the dry run created nobody')
  t.equal((await w.directoryStore.loadDirectory(TENANT)).length, 0, 'and stored no directory')
  t.notOk(await w.directoryStore.hasImported(TENANT))
  t.equal(w.sim.requestCount('listUsers'), 2, 'two pages of $top=999')

  // Graph throttles the second page of the real run once: that page is asked again after Retry-After.
  let armed = false
  const arm = (e: { operation: string }) => {
    if (e.operation === 'listUsers' && !armed) {
      armed = true
      w.sim.faults.throttleNext(1, 0.05)
    }
  }
  w.sim.resetStats()
  w.sim.on('request', arm)
  const real = await w.runImport(false)
  w.sim.off('request', arm)
  t.equal(real.state, 'succeeded', real.error ?? '')
  t.equal(w.sim.requestStats().byStatus['429'], 1, 'one page was throttled and asked again')
  const progress = lines().filter((l) => l.msg === 'user import progress' && l['run'] === real.id).map((l) => [l['pages'], l['fetched'], l['total']])
  t.same(progress, [[1, 999, expected.length], [2, expected.length, expected.length]], 'a progress log line per page')
  t.same(real.result?.counts, dry.result?.counts, 'the real run has the dry run\'s figures')
  t.same(real.result?.added.map((p) => p.email), dry.result?.added.map((p) => p.email), 'and the same people')
  const people = await w.directoryStore.listTenantPeople(TENANT)
  t.equal(people.length, expected.length)
  t.same(new Set(people.map((p) => p.graphUserId)), new Set(expected.map((u) => u.id)), 'each imported person carries its Entra object id')
  t.ok(people.every((p) => p.source === 'import' && p.active && p.syncMode === 'full' && p.entra !== null && p.importedAt !== null))
  t.ok(people.every((p) => p.email === p.email.toLowerCase()), 'e-mails stored lower-case like every person')
  t.equal((await w.directoryStore.loadDirectory(TENANT)).length, expected.length, 'the imported directory is stored for mapping')

  // A PBX directory with every one of the 2,500 users (e-mails in upper case) maps without any Graph request.
  w.sim.resetStats()
  const started = performance.now()
  await w.pbx(users.map((u, i) => ({ endpointId: String(1000 + i), name: u.displayName, email: u.userPrincipalName.toUpperCase() })))
  t.comment(`2,500-entry PBX directory mapped in ${Math.round(performance.now() - started)} ms`)
  t.equal(w.sim.requestStats().total, 0, 'no Graph request for the PBX directory')
  const endpoints = await w.directoryStore.listTenantEndpoints(TENANT)
  t.equal(endpoints.filter((e) => e.personId !== null).length, expected.length, 'the imported users\' extensions are mapped, the others are not')
  t.equal(w.engine.graphUserIds(TENANT).length, expected.length)

  const again = await w.runImport(false)
  t.match(again.result?.counts, { matched: expected.length, added: 0, updated: 0, unchanged: expected.length, deactivated: 0 }, 'an unchanged directory changes nothing')

  const runs = await w.directory.listRuns(TENANT)
  t.same(runs.map((r) => [r.dryRun, r.state]), [[false, 'succeeded'], [false, 'succeeded'], [true, 'succeeded']], 'runs are kept, newest first')
  const stored = await w.directory.getRun(TENANT, real.id)
  t.same(stored?.result?.counts, real.result?.counts, 'a finished run reads back from the store')
})
