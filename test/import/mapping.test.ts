import t from 'tap'
import { GATEWAY, TENANT, startImportWorld, type ImportWorld } from './fixtures/import-world.js'

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
const users = () => [
  // Mail differs from the UPN; an alias in proxyAddresses.
  { id: id(1), displayName: 'Alice', userPrincipalName: 'alice.adams@contoso.onmicrosoft.example', mail: 'Alice@Contoso.example', proxyAddresses: ['SMTP:Alice@Contoso.example', 'smtp:aa@contoso.example', 'SIP:alice.sip@contoso.example'] },
  // Reached by UPN only (no mailbox).
  { id: id(2), displayName: 'Bob', userPrincipalName: 'Bob@Contoso.example', mail: null },
  // Alias only, with an upper-case prefix written in an odd way.
  { id: id(3), displayName: 'Carol', userPrincipalName: 'carol@contoso.example', proxyAddresses: ['SMTP:carol@contoso.example', 'Smtp:c.jones@contoso.example', 'smtp:team@contoso.example'] },
  // Shares the alias team@ with Carol: ambiguous.
  { id: id(4), displayName: 'Dave', userPrincipalName: 'dave@contoso.example', proxyAddresses: ['SMTP:dave@contoso.example', 'smtp:TEAM@contoso.example'] },
  // Nobody on the PBX.
  { id: id(5), displayName: 'Erin', userPrincipalName: 'erin@contoso.example' },
]

const endpointOf = async (w: ImportWorld, endpointId: string) => (await w.directoryStore.listTenantEndpoints(TENANT)).find((e) => e.endpointId === endpointId)
const personOf = async (w: ImportWorld, personId: number | null | undefined) => (await w.directoryStore.listTenantPeople(TENANT)).find((p) => p.id === personId)

t.test('without an import the PBX e-mail path stays: one Graph findUser per person', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres' })
  t.teardown(() => w.close())
  await w.pbx([{ endpointId: '201', name: 'Bob', email: 'bob@contoso.example' }, { endpointId: '202', name: 'Erin', email: 'erin@contoso.example' }])
  t.equal(w.sim.requestCount('getUser'), 2, 'findUser for each')
  t.equal((await personOf(w, (await endpointOf(w, '202'))?.personId))?.graphUserId, id(5))
})

t.test('auto-mapping through the imported directory: mail, UPN and proxyAddresses, any case, no Graph request per person', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres' })
  t.teardown(() => w.close())
  const run = await w.runImport()
  t.equal(run.state, 'succeeded', run.error ?? '')
  w.sim.resetStats()
  await w.pbx([
    { endpointId: '201', name: 'Alice desk', email: 'ALICE@contoso.EXAMPLE' }, // mail
    { endpointId: '202', name: 'Alice soft', email: 'Alice.Adams@Contoso.onmicrosoft.example' }, // UPN
    { endpointId: '203', name: 'Alice DECT', email: 'AA@contoso.example' }, // smtp alias
    { endpointId: '204', name: 'Bob', email: 'bob@CONTOSO.example' }, // UPN, no mailbox
    { endpointId: '205', name: 'Carol', email: 'C.Jones@contoso.example' }, // 'Smtp:' prefix
    { endpointId: '206', name: 'Team line', email: 'team@contoso.example' }, // two users
    { endpointId: '207', name: 'Frank', email: 'frank@contoso.example' }, // nobody
    { endpointId: '208', name: 'Lobby' }, // no e-mail
    { endpointId: '209', name: 'Alice SIP', email: 'alice.sip@contoso.example' }, // SIP: is not an e-mail address
  ])
  t.equal(w.sim.requestStats().total, 0, 'mapping made no Graph request at all')
  const alice = await personOf(w, (await endpointOf(w, '201'))?.personId)
  t.equal(alice?.graphUserId, id(1))
  t.equal(alice?.email, 'alice@contoso.example', 'the imported person\'s e-mail is the mail, lower-case')
  for (const ext of ['202', '203']) t.equal((await endpointOf(w, ext))?.personId, alice?.id, `${ext} maps to Alice`)
  t.equal((await personOf(w, (await endpointOf(w, '204'))?.personId))?.graphUserId, id(2), 'by UPN')
  t.equal((await personOf(w, (await endpointOf(w, '205'))?.personId))?.graphUserId, id(3), 'by smtp alias, prefix in any case')
  for (const ext of ['206', '207', '208', '209']) t.equal((await endpointOf(w, ext))?.personId, null, `${ext} is not mapped`)
  t.equal(w.engine.person(alice!.id)?.endpoints.size, 3, 'the engine holds Alice with her three extensions')
  t.same(w.engine.graphUserIds(TENANT).sort(), [id(1), id(2), id(3)], 'and polls the mapped people')

  const report = await w.directory.mappingReport(TENANT)
  t.match(report, { imported: true, directoryUsers: 5 })
  t.same(report.endpoints.map((e) => [e.endpointId, e.via]), [['201', 'mail'], ['202', 'userPrincipalName'], ['203', 'proxyAddress'], ['204', 'userPrincipalName'], ['205', 'proxyAddress'], ['206', null], ['207', null], ['208', null], ['209', null]])
  t.same(report.ambiguous, [{ email: 'team@contoso.example', graphUserIds: [id(3), id(4)], endpoints: [`${GATEWAY}/osbiz/206`] }], 'one e-mail, two Entra users')
  t.same(report.sharedUsers, [{ graphUserId: id(1), emails: ['aa@contoso.example', 'alice.adams@contoso.onmicrosoft.example', 'alice@contoso.example'], endpoints: [`${GATEWAY}/osbiz/201`, `${GATEWAY}/osbiz/202`, `${GATEWAY}/osbiz/203`] }], 'extensions with different e-mails claiming one user')
  t.same(report.unmatchedPbx.map((u) => u.email), ['frank@contoso.example', 'alice.sip@contoso.example'], 'PBX e-mails nobody answers to')
  t.same(report.withoutEmail, [{ endpoint: `${GATEWAY}/osbiz/208`, name: 'Lobby' }])
  t.same(report.unmatchedEntra.map((u) => u.graphUserId).sort(), [id(4), id(5)], 'imported users no extension maps to')
})

t.test('a manual mapping overrides the automatic one and survives a re-import', async (t) => {
  const w = await startImportWorld({ users: users(), backend: 'postgres' })
  t.teardown(() => w.close())
  await w.runImport()
  await w.pbx([{ endpointId: '206', name: 'Team line', email: 'team@contoso.example' }, { endpointId: '201', name: 'Alice desk', email: 'alice@contoso.example' }])
  const people = await w.directoryStore.listTenantPeople(TENANT)
  const dave = people.find((p) => p.graphUserId === id(4))!
  const erin = people.find((p) => p.graphUserId === id(5))!
  await w.directory.setManualMapping(TENANT, { gatewayId: GATEWAY, connectorId: 'osbiz', endpointId: '206', personId: dave.id }, 'an admin (test)')
  await w.directory.setManualMapping(TENANT, { gatewayId: GATEWAY, connectorId: 'osbiz', endpointId: '201', personId: erin.id }, 'an admin (test)')
  await w.engine.idle()
  t.equal((await endpointOf(w, '206'))?.personId, dave.id, 'an ambiguous extension mapped by hand')
  t.equal((await endpointOf(w, '201'))?.personId, erin.id, 'the manual mapping wins over the automatic one')
  t.ok(w.engine.person(erin.id)?.endpoints.has(`${GATEWAY}/osbiz/201`), 'the engine moved the extension at once')

  w.sim.updateUser(id(5), { displayName: 'Erin Evans' })
  const again = await w.runImport()
  t.match(again.result?.counts, { updated: 1 })
  await w.pbx([{ endpointId: '206', name: 'Team line', email: 'team@contoso.example' }, { endpointId: '201', name: 'Alice desk', email: 'alice@contoso.example' }])
  t.equal((await endpointOf(w, '206'))?.personId, dave.id, 'still Dave after the re-import and a new PBX directory')
  t.equal((await endpointOf(w, '201'))?.personId, erin.id, 'still Erin')
  const report = await w.directory.mappingReport(TENANT)
  t.same(report.endpoints.map((e) => e.via), ['manual', 'manual'])
  t.equal(report.manual.length, 2)

  t.ok(await w.directory.removeManualMapping(TENANT, GATEWAY, 'osbiz', '201', 'an admin (test)'))
  await w.engine.idle()
  t.equal((await personOf(w, (await endpointOf(w, '201'))?.personId))?.graphUserId, id(1), 'without the manual mapping, automatic mapping applies again')
  await t.rejects(w.directory.setManualMapping(TENANT, { gatewayId: GATEWAY, connectorId: 'osbiz', endpointId: '201', personId: 999999 }, 'x'), { code: 'DIRECTORY_UNKNOWN_PERSON', message: /GET \/api\/v1\/people\?tenant=contoso lists them/ })
  await t.rejects(w.directory.setManualMapping(TENANT, { gatewayId: 'gw-other', connectorId: 'osbiz', endpointId: '201', personId: erin.id }, 'x'), { code: 'DIRECTORY_UNKNOWN_ENDPOINT' })
})
