import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import type { DirectoryEntry } from '../../gateway/protocol/schemas.js'
import type { PbxObservation } from '../../gateway/src/adapters/types.js'
import { startAdapter, synchronised, USERS, type Harness } from './fixtures/harness.js'

function lastDirectory(harness: Harness): DirectoryEntry[] {
  const directories = harness.observations.items.filter((o): o is Extract<PbxObservation, { kind: 'directory' }> => o.kind === 'directory')
  return [...(directories.at(-1)?.entries ?? [])].sort((a, b) => a.endpointId.localeCompare(b.endpointId))
}

function directoryWhere(harness: Harness, from: number, predicate: (entries: DirectoryEntry[]) => boolean, what: string) {
  return harness.observations.waitFor((o) => o.kind === 'directory' && predicate(o.entries), { from, what })
}

t.test('the directory comes from PbxTableUsers with the primary e-mail', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ['201', '202', '203'])
  t.same(lastDirectory(harness), [
    { endpointId: '201', name: 'Alice Adams', email: 'alice@contoso.example' },
    { endpointId: '202', name: 'Bob Baker', email: 'bob@contoso.example' },
    { endpointId: '203', name: 'Carol Clark', email: 'carol@contoso.example' },
  ], 'first of emails[], or the h323 name when h323-email is set')
  const directoryAt = harness.observations.items.findIndex((o) => o.kind === 'directory')
  const firstSnapshot = harness.observations.items.findIndex((o) => o.kind === 'snapshot')
  t.ok(directoryAt < firstSnapshot, 'the directory comes before the first snapshot')
})

t.test('live add, update and delete', async (t) => {
  const harness = await startAdapter(t)
  await synchronised(harness, ['201', '202', '203'])

  let from = harness.observations.mark()
  harness.sim.addUser({ cn: 'Dave Dunn', e164: '204', h323: 'dave', emails: ['dave@contoso.example'] })
  await directoryWhere(harness, from, (entries) => entries.some((entry) => entry.endpointId === '204' && entry.email === 'dave@contoso.example'), 'Dave in the directory')
  await harness.observations.waitFor((o) => o.kind === 'snapshot' && o.endpointId === '204', { from, what: 'Dave monitored' })
  const call = harness.sim.incomingCall('204')
  await harness.observations.waitFor((o) => o.kind === 'call' && o.endpointId === '204' && o.callId === call && o.state === 'alerting', { from, what: 'a call for Dave' })
  t.pass('a person added at runtime is in the directory and monitored')

  from = harness.observations.mark()
  harness.sim.updateUser('202', { emails: ['b.baker@contoso.example'], dn: 'Bob B.' })
  await directoryWhere(harness, from, (entries) => entries.some((entry) => entry.endpointId === '202' && entry.email === 'b.baker@contoso.example' && entry.name === 'Bob B.'), 'Bob updated')
  t.pass('a changed e-mail and name are published')

  from = harness.observations.mark()
  harness.sim.updateUser('203', { e164: '213' })
  await directoryWhere(harness, from, (entries) => entries.some((entry) => entry.endpointId === '213') && !entries.some((entry) => entry.endpointId === '203'), 'Carol renumbered')
  await harness.observations.waitFor((o) => o.kind === 'snapshot' && o.endpointId === '213', { from, what: 'Carol monitored under 213' })
  t.pass('a new number moves the monitoring')

  from = harness.observations.mark()
  harness.sim.removeUser('201')
  await directoryWhere(harness, from, (entries) => !entries.some((entry) => entry.endpointId === '201'), 'Alice gone')
  await t.rejects(harness.adapter.setDnd('201', true), { code: 'INNOVAPHONE_UNKNOWN_DEVICE' }, 'a deleted person is no longer an endpoint')
  t.equal(harness.sim.monitorCount('201'), 0)
})

t.test('people without a number are not endpoints; people without an e-mail are listed without one', async (t) => {
  const harness = await startAdapter(t, {
    sim: { users: [...USERS, { cn: 'Conference Room', e164: '', h323: 'room' }, { cn: 'Eve Evans', e164: '205', h323: 'eve' }] },
  })
  await synchronised(harness, ['201', '202', '203', '205'])
  const entries = lastDirectory(harness)
  t.same(entries.map((entry) => entry.endpointId), ['201', '202', '203', '205'])
  t.same(entries.find((entry) => entry.endpointId === '205'), { endpointId: '205', name: 'Eve Evans' })
})

t.test('multi-node: a connector with pbxNames monitors only the people registered on those nodes', async (t) => {
  const users = [
    { cn: 'Alice Adams', e164: '201', h323: 'alice', emails: ['alice@contoso.example'], pbx: 'master' },
    { cn: 'Bob Baker', e164: '202', h323: 'bob', emails: ['bob@contoso.example'], pbx: 'branch1' },
    { cn: 'Carol Clark', e164: '203', h323: 'carol', pbx: 'branch1' },
  ]
  const harness = await startAdapter(t, { sim: { users }, config: { pbxNames: ['branch1'] } })
  await synchronised(harness, ['202', '203'])
  t.same(lastDirectory(harness).map((entry) => entry.endpointId), ['202', '203'], 'only branch1 people')
  t.equal(harness.sim.monitorCount('201'), 0, 'Alice (master) is not monitored')
  t.match(harness.logs.withMessage('people registered on other PBX nodes are not monitored by this connector; add a connector for their node'), [{ count: 1, examples: ['201@master'] }])

  const from = harness.observations.mark()
  harness.sim.updateUser('202', { pbx: 'master' })
  await directoryWhere(harness, from, (entries) => !entries.some((entry) => entry.endpointId === '202'), 'Bob moved away')
  await eventually(() => harness.sim.monitorCount('202') === 0, 'UserEnd for Bob')
  t.pass('monitoring ends (UserEnd) when the person moves to another node')
})
