import t from 'tap'
import type { DirectoryPersonRow } from '../../cloud-relay/src/store/directory-store.js'
import { planSeats } from '../../cloud-relay/src/directory/seats.js'
import { TENANT, startImportWorld, type ImportWorld } from './fixtures/import-world.js'

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
const person = (n: number, at: number, extra: Partial<DirectoryPersonRow> = {}): DirectoryPersonRow => ({
  id: n, tenantId: 't', email: `p${n}@x`, displayName: '', graphUserId: `g${n}`, syncMode: 'full', settingsOverride: null, source: 'import', active: true,
  inactiveReason: null, syncModeWhenActive: null, createdAt: new Date(at), importedAt: null, lastImportedAt: null, entra: null, ...extra,
})

t.test('seat order: added time, then id; only people matched to Entra and not inactive for another reason count', async (t) => {
  const people = [person(4, 100), person(2, 200), person(3, 100), person(1, 300), person(5, 50, { graphUserId: null }), person(6, 10, { active: false, inactiveReason: 'import' })]
  const plan = planSeats(people, 2)
  t.same(plan.deactivate.map((p) => p.id), [2, 1], 'the most recently added lose their seat; equal times fall back to id')
  t.equal(plan.seated, 2)
  const waiting = planSeats([person(3, 100), person(4, 100), person(2, 200, { active: false, inactiveReason: 'seats' }), person(1, 300, { active: false, inactiveReason: 'seats' })], 3)
  t.same(waiting.reactivate.map((p) => p.id), [2], 'oldest waiting person first')
  t.same(planSeats(people, undefined).deactivate, [], 'no limit: nobody loses a seat')
})

async function seatEvents(w: ImportWorld): Promise<Array<[string, string]>> {
  const events = await w.store.queryEvents({ tenantId: TENANT, kindPrefix: 'seats.', limit: 100 })
  const people = await w.directoryStore.listTenantPeople(TENANT)
  return events.reverse().map((e) => [e.kind, people.find((p) => p.id === e.personId)?.email ?? '?'])
}

t.test('seats shrink and grow: deactivated newest first, re-activated oldest first, each in the event log', async (t) => {
  const users = Array.from({ length: 5 }, (_, i) => ({ id: id(i + 1), displayName: `P${i + 1}`, userPrincipalName: `p${i + 1}@contoso.example` }))
  const w = await startImportWorld({ users: users.slice(0, 3), backend: 'postgres', settings: { seats: 4 } })
  t.teardown(() => w.close())
  await w.runImport()
  // Two more people join later (a later import): they are the most recently added.
  w.clock.advance(60_000)
  w.sim.addUser(users[3]!)
  w.sim.addUser(users[4]!)
  const preview = await w.runImport(true)
  t.same(preview.result?.seats, { limit: 4, deactivated: [{ personId: null, email: 'p5@contoso.example', displayName: 'P5', graphUserId: id(5) }], reactivated: [] }, 'the dry run says who would wait for a seat')
  const grow = await w.runImport()
  t.match(grow.result?.counts, { added: 2 })
  t.same(grow.result?.seats.deactivated.map((p) => p.email), preview.result?.seats.deactivated.map((p) => p.email), 'and the real run does just that')
  const active = async () => (await w.directoryStore.listTenantPeople(TENANT)).filter((p) => p.active).map((p) => p.email).sort()
  t.same(await active(), ['p1@contoso.example', 'p2@contoso.example', 'p3@contoso.example', 'p4@contoso.example'], 'an import over the limit: the newest person waits')
  t.same(await seatEvents(w), [['seats.deactivated', 'p5@contoso.example']])

  await w.pbx([{ endpointId: '204', name: 'P4', email: 'p4@contoso.example' }])
  const p4 = (await w.directoryStore.listTenantPeople(TENANT)).find((p) => p.email === 'p4@contoso.example')!
  t.equal(w.engine.person(p4.id)?.row.syncMode, 'full')

  t.same(await w.directory.setSeatLimit(TENANT, 2), { deactivated: 2, reactivated: 0, seated: 2 })
  t.same(await active(), ['p1@contoso.example', 'p2@contoso.example'])
  t.equal(w.engine.person(p4.id)?.row.syncMode, 'off', 'the engine stops syncing a person who lost their seat')
  const deactivated = await w.store.queryEvents({ tenantId: TENANT, personId: p4.id, kindPrefix: 'seats.deactivated', limit: 5 })
  t.match(deactivated[0]?.message, /P4 deactivated: the tenant's 2 seats are taken/, 'the event log says why')

  t.same(await w.directory.setSeatLimit(TENANT, 3), { deactivated: 0, reactivated: 1, seated: 3 })
  t.same(await active(), ['p1@contoso.example', 'p2@contoso.example', 'p3@contoso.example'], 'a freed seat goes to the oldest waiting person')
  t.same(await w.directory.setSeatLimit(TENANT, undefined), { deactivated: 0, reactivated: 2, seated: 5 })
  t.equal(w.engine.person(p4.id)?.row.syncMode, 'full', 'and back to their own sync mode')
  t.same(await seatEvents(w), [
    ['seats.deactivated', 'p5@contoso.example'],
    ['seats.deactivated', 'p3@contoso.example'],
    ['seats.deactivated', 'p4@contoso.example'],
    ['seats.reactivated', 'p3@contoso.example'],
    ['seats.reactivated', 'p4@contoso.example'],
    ['seats.reactivated', 'p5@contoso.example'],
  ], 'one line per person and change, in order')
  const again = await w.runImport()
  t.match(again.result?.counts, { unchanged: 5, deactivated: 0 }, 'a re-import leaves seats alone')
})
