import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import { GATEWAY, TENANT, startImportWorld, type ImportWorld } from './fixtures/import-world.js'

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
const users = () => [
  { id: id(1), displayName: 'Alice', userPrincipalName: 'alice@contoso.example', department: 'Sales' },
  { id: id(2), displayName: 'Bob', userPrincipalName: 'bob@contoso.example', department: 'Sales' },
  { id: id(3), displayName: 'Carol', userPrincipalName: 'carol@contoso.example', department: 'Sales' },
]

async function person(w: ImportWorld, email: string) {
  return (await w.directoryStore.listTenantPeople(TENANT)).find((p) => p.email === email)
}

async function kinds(w: ImportWorld, personId: number): Promise<string[]> {
  return (await w.store.queryEvents({ tenantId: TENANT, personId, limit: 50 })).map((e) => e.kind)
}

t.test('no longer matching, policy "deactivate": sync off and logged; matching again restores the person\'s own mode', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres', settings: { departments: ['Sales'] } })
  t.teardown(() => w.close())
  await w.runImport()
  await w.pbx([{ endpointId: '201', name: 'Bob', email: 'bob@contoso.example' }])
  const bob = (await person(w, 'bob@contoso.example'))!
  await w.engine.updatePerson(bob.id, { syncMode: 'telephony' }, 'test')
  w.sim.updateUser(id(2), { department: 'Marketing' })
  w.sim.updateUser(id(3), { accountEnabled: false })

  const dry = await w.runImport(true)
  t.match(dry.result?.counts, { matched: 1, unchanged: 1, deactivated: 2, removed: 0 })
  t.ok((await person(w, 'bob@contoso.example'))?.active, 'the dry run deactivated nobody')

  const run = await w.runImport()
  t.same(run.result?.deactivated.map((p) => p.email), ['bob@contoso.example', 'carol@contoso.example'])
  const after = (await person(w, 'bob@contoso.example'))!
  t.match(after, { active: false, inactiveReason: 'import', syncMode: 'off', syncModeWhenActive: 'telephony' })
  t.equal(w.engine.person(bob.id)?.row.syncMode, 'off', 'the engine stops syncing Bob at once')
  t.ok((await kinds(w, bob.id)).includes('directory.deactivated'))
  t.match((await person(w, 'carol@contoso.example')), { active: false, inactiveReason: 'import', syncMode: 'off' }, 'a disabled account is deactivated too')
  t.equal((await w.directoryStore.listTenantEndpoints(TENANT)).find((e) => e.endpointId === '201')?.personId, bob.id, 'Bob keeps his extension while inactive')

  const quiet = await w.runImport()
  t.match(quiet.result?.counts, { deactivated: 0, unchanged: 1 }, 'already deactivated people are not deactivated twice')

  w.sim.updateUser(id(2), { department: 'Sales' })
  const back = await w.runImport()
  t.same(back.result?.reactivated.map((p) => p.email), ['bob@contoso.example'])
  t.match(await person(w, 'bob@contoso.example'), { active: true, inactiveReason: null, syncMode: 'telephony' }, 'the person\'s own sync mode comes back')
  t.equal(w.engine.person(bob.id)?.row.syncMode, 'telephony')
  t.ok((await kinds(w, bob.id)).includes('directory.reactivated'))
})

t.test('policy "remove": the person goes, the extension stays unmapped', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres', settings: { departments: ['Sales'], onNoLongerMatching: 'remove' } })
  t.teardown(() => w.close())
  await w.runImport()
  await w.pbx([{ endpointId: '202', name: 'Carol', email: 'carol@contoso.example' }])
  const carol = (await person(w, 'carol@contoso.example'))!
  w.sim.removeUser(id(3))
  const dry = await w.runImport(true)
  t.match(dry.result?.counts, { removed: 1, deactivated: 0 })
  t.ok(await person(w, 'carol@contoso.example'), 'still there after the dry run')
  const run = await w.runImport()
  t.same(run.result?.removed.map((p) => p.email), ['carol@contoso.example'])
  t.notOk(await person(w, 'carol@contoso.example'), 'removed from people')
  const endpoints = await w.directoryStore.listTenantEndpoints(TENANT)
  t.match(endpoints.find((e) => e.endpointId === '202'), { gatewayId: GATEWAY, personId: null }, 'the extension is no longer mapped')
  t.ok((await kinds(w, carol.id)).includes('directory.removed'), 'the event log says so')
})

t.test('policy "keep": nothing changes for people who no longer match', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres', settings: { departments: ['Sales'], onNoLongerMatching: 'keep' } })
  t.teardown(() => w.close())
  await w.runImport()
  await w.pbx([{ endpointId: '201', name: 'Alice', email: 'alice@contoso.example' }])
  const alice = (await person(w, 'alice@contoso.example'))!
  w.sim.updateUser(id(1), { department: 'Legal' })
  const run = await w.runImport()
  t.match(run.result?.counts, { kept: 1, deactivated: 0, removed: 0 })
  t.match(await person(w, 'alice@contoso.example'), { active: true, syncMode: 'full' })
  await w.pbx([{ endpointId: '201', name: 'Alice', email: 'alice@contoso.example' }])
  t.equal((await w.directoryStore.listTenantEndpoints(TENANT)).find((e) => e.endpointId === '201')?.personId, alice.id, 'her extension stays mapped')
  t.equal(w.engine.person(alice.id)?.endpoints.size, 1)
})

t.test('the daily schedule runs on the injected clock at the configured time', async (t) => {
  const start = Date.parse('2026-11-21T02:59:00Z')
  const w = await startImportWorld({ users: users(), backend: 'postgres', startMs: start, settings: { dailyAt: '03:00' } })
  t.teardown(() => w.close())
  w.clock.advance(59_000)
  t.same(await w.directory.listRuns(TENANT), [], 'nothing before 03:00')
  w.clock.advance(1_000)
  const first = await eventually(async () => (await w.directory.listRuns(TENANT)).find((r) => r.state === 'succeeded'), 'the 03:00 import')
  t.match(first, { trigger: 'schedule', dryRun: false, startedAt: '2026-11-21T03:00:00.000Z' })
  t.equal((await w.directoryStore.listTenantPeople(TENANT)).length, 3)
  w.clock.advance(24 * 3600_000 - 1)
  t.equal((await w.directory.listRuns(TENANT)).length, 1, 'not again before the next day')
  w.clock.advance(1)
  const second = await eventually(async () => {
    const runs = await w.directory.listRuns(TENANT)
    return runs.length === 2 && runs[0]?.state === 'succeeded' ? runs[0] : undefined
  }, 'the next day\'s import')
  t.match(second, { trigger: 'schedule', startedAt: '2026-11-22T03:00:00.000Z' })
})

t.test('bad input: an unknown group and missing consent give errors that say what to do', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres', settings: { groups: ['0f0f0f0f-0000-4000-8000-000000000000'] } })
  t.teardown(() => w.close())
  const run = await w.runImport(true)
  t.equal(run.state, 'failed')
  t.match(run.error, /group 0f0f0f0f-0000-4000-8000-000000000000 does not exist .*check the group's Object ID in Entra ID → Groups/)
  t.equal((await w.directory.getRun(TENANT, run.id))?.state, 'failed', 'the failure is stored')

  const noGroups = await startImportWorld({ users: users(), backend: 'postgres', roles: ['User.Read.All'], settings: { groups: [id(99)] } })
  t.teardown(() => noGroups.close())
  noGroups.sim.addGroup({ id: id(99), displayName: 'Phones', memberIds: [id(1)] })
  const denied = await noGroups.runImport()
  t.match(denied, { state: 'failed', error: /add GroupMember\.Read\.All \(type: Application\) and click "Grant admin consent"/ })

  const noUsers = await startImportWorld({ users: users(), backend: 'postgres', roles: ['Presence.ReadWrite.All'] })
  t.teardown(() => noUsers.close())
  const refused = await noUsers.runImport()
  t.match(refused, { state: 'failed', error: /listUsers: Microsoft Graph denied access .*User\.Read\.All.*Grant admin consent/ })
  t.equal((await noUsers.directoryStore.listTenantPeople(TENANT)).length, 0, 'a failed import changes nothing')
})
