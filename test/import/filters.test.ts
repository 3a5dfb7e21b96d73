import t from 'tap'
import { rawGraph, startImportWorld } from './fixtures/import-world.js'

const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`
const users = [
  { id: id(1), displayName: 'Alice', userPrincipalName: 'alice@contoso.example', department: 'Sales' },
  { id: id(2), displayName: 'Bob', userPrincipalName: 'bob@contoso.example', department: 'Support' },
  { id: id(3), displayName: 'Carol', userPrincipalName: 'carol@contoso.example', department: 'Sales', accountEnabled: false },
  { id: id(4), displayName: 'Dave', userPrincipalName: 'dave@fabrikam.example', department: 'Sales' },
  { id: id(5), displayName: 'Erin', userPrincipalName: 'erin@contoso.onmicrosoft.example', mail: 'erin@fabrikam.example', department: 'Support', companyName: 'Fabrikam' },
  { id: id(6), displayName: 'Frank', userPrincipalName: 'frank@fabrikam.example', department: 'Engineering' },
  { id: id(7), displayName: "Grace O'Neil", userPrincipalName: 'grace@contoso.example', department: "R&D #1 + O'Neil's" },
]

const w = await startImportWorld({ users, backend: 'postgres' })
t.teardown(() => w.close())
const inner = w.sim.addGroup({ displayName: 'Inner', memberIds: [id(4)] })
const outer = w.sim.addGroup({ displayName: 'Outer', memberIds: [id(1), inner.id] })
const other = w.sim.addGroup({ displayName: 'Other', memberIds: [id(6)] })

async function dryRunEmails(change: Partial<typeof w.settings>): Promise<string[]> {
  Object.assign(w.settings, { enabledOnly: false, domains: [], departments: [], groups: [] }, change)
  const run = await w.runImport(true)
  if (run.state !== 'succeeded') throw new Error(run.error ?? 'import failed')
  return (run.result?.added ?? []).map((p) => p.email).sort()
}

t.test('each filter alone', async (t) => {
  t.same(await dryRunEmails({}), ['alice@contoso.example', 'bob@contoso.example', 'carol@contoso.example', 'dave@fabrikam.example', 'erin@fabrikam.example', 'frank@fabrikam.example', 'grace@contoso.example'], 'no filter: everyone')
  t.same(await dryRunEmails({ enabledOnly: true }), ['alice@contoso.example', 'bob@contoso.example', 'dave@fabrikam.example', 'erin@fabrikam.example', 'frank@fabrikam.example', 'grace@contoso.example'], 'enabled only')
  t.same(await dryRunEmails({ domains: ['fabrikam.example'] }), ['dave@fabrikam.example', 'erin@fabrikam.example', 'frank@fabrikam.example'], 'domain: by UPN or by mail (Erin\'s UPN is elsewhere)')
  t.same(await dryRunEmails({ domains: ['FABRIKAM.example', 'contoso.onmicrosoft.example'] }), ['dave@fabrikam.example', 'erin@fabrikam.example', 'frank@fabrikam.example'], 'several domains: any of them, case-insensitive')
  t.same(await dryRunEmails({ departments: ['Sales'] }), ['alice@contoso.example', 'carol@contoso.example', 'dave@fabrikam.example'], 'department')
  t.same(await dryRunEmails({ departments: ["R&D #1 + O'Neil's"] }), ['grace@contoso.example'], 'a department with &, #, + and a quote survives the URL (graph-client does not encode query values)')
  t.same(await dryRunEmails({ groups: [outer.id] }), ['alice@contoso.example', 'dave@fabrikam.example'], 'group: members of nested groups included')
  t.same(await dryRunEmails({ groups: [outer.id, other.id] }), ['alice@contoso.example', 'dave@fabrikam.example', 'frank@fabrikam.example'], 'several groups: any of them')
})

t.test('filters combine with AND', async (t) => {
  t.same(await dryRunEmails({ enabledOnly: true, domains: ['contoso.example'], departments: ['Sales'] }), ['alice@contoso.example'], 'enabled AND domain AND department')
  t.same(await dryRunEmails({ enabledOnly: true, departments: ['Sales', 'Engineering'], groups: [outer.id, other.id] }), ['alice@contoso.example', 'dave@fabrikam.example', 'frank@fabrikam.example'], 'department AND group')
  t.same(await dryRunEmails({ domains: ['contoso.example'], groups: [other.id] }), [], 'domain AND group with nobody in both')
  t.equal(w.sim.requestCount('getUser'), 0, 'no per-user lookups')
})

t.test('ConsistencyLevel: advanced queries need the header and $count=true (400 with Graph\'s error otherwise)', async (t) => {
  const endsWith = `/v1.0/users?$filter=${encodeURIComponent("endswith(mail,'@fabrikam.example')")}`
  const bare = await rawGraph(w, endsWith)
  t.equal(bare.status, 400)
  t.match(bare.body, { error: { code: 'Request_UnsupportedQuery', message: /endsWith' is not supported because the required parameters might be missing.*ConsistencyLevel:eventual/ } })
  t.equal((await rawGraph(w, endsWith, { ConsistencyLevel: 'eventual' })).status, 400, 'the header alone is not enough')
  t.equal((await rawGraph(w, `${endsWith}&$count=true`)).status, 400, '$count=true alone is not enough')
  const advanced = await rawGraph(w, `${endsWith}&$count=true`, { ConsistencyLevel: 'eventual' })
  t.equal(advanced.status, 200)
  t.match(advanced.body, { '@odata.count': 3, value: [{ userPrincipalName: 'dave@fabrikam.example' }, { mail: 'erin@fabrikam.example' }, { userPrincipalName: 'frank@fabrikam.example' }] })

  for (const [filter, what] of [["department eq 'Sales'", 'department eq'], ['accountEnabled eq true', 'accountEnabled eq'], ["department in ('Sales','Support')", 'in'], ["startswith(displayName,'A')", 'startsWith on displayName']] as const) {
    t.equal((await rawGraph(w, `/v1.0/users?$filter=${encodeURIComponent(filter)}`)).status, 200, `${what} works by default`)
  }
  for (const [filter, what] of [['accountEnabled ne false', 'ne'], ["not(department eq 'Sales')", 'not'], ["companyName eq 'Fabrikam'", 'companyName eq']] as const) {
    const res = await rawGraph(w, `/v1.0/users?$filter=${encodeURIComponent(filter)}`)
    t.equal(res.status, 400, `${what} needs advanced query parameters`)
    t.equal((await rawGraph(w, `/v1.0/users?$filter=${encodeURIComponent(filter)}&$count=true`, { ConsistencyLevel: 'eventual' })).status, 200, `${what} works with them`)
  }
  const unsupported = await rawGraph(w, `/v1.0/users?$filter=${encodeURIComponent("endswith(department,'es')")}&$count=true`, { ConsistencyLevel: 'eventual' })
  t.match(unsupported, { status: 400, body: { error: { code: 'Request_UnsupportedQuery', message: /property 'department'/ } } }, 'endsWith only on mail/UPN, even with advanced parameters')

  const silent = await rawGraph(w, '/v1.0/users?$count=true')
  t.equal(silent.status, 200, '$count=true without the header is ignored, not refused')
  t.notOk('@odata.count' in (silent.body as object), 'and brings no @odata.count')
  const count = await rawGraph(w, '/v1.0/users/$count')
  t.match(count, { status: 400, body: { error: { code: 'Request_BadRequest', message: '$count is not currently supported.' } } }, '/users/$count needs the header')
  const counted = await rawGraph(w, `/v1.0/users/$count?$filter=${encodeURIComponent("department eq 'Sales'")}`, { ConsistencyLevel: 'eventual' })
  t.match(counted, { status: 200, contentType: /^text\/plain/, body: '3' }, '/users/$count is text/plain')

  const selected = await rawGraph(w, `/v1.0/users?$select=id,accountEnabled,department,proxyAddresses&$filter=${encodeURIComponent("department eq 'Support'")}`)
  t.same((selected.body as { value: unknown[] }).value, [
    { id: id(2), accountEnabled: true, department: 'Support', proxyAddresses: ['SMTP:bob@contoso.example'] },
    { id: id(5), accountEnabled: true, department: 'Support', proxyAddresses: ['SMTP:erin@fabrikam.example'] },
  ], '$select returns the import attributes')
  t.equal((await rawGraph(w, '/v1.0/users?$top=1000')).status, 400, '$top above 999 is refused')

  const cast = `/v1.0/groups/${outer.id}/transitiveMembers/microsoft.graph.user`
  t.equal((await rawGraph(w, cast)).status, 400, 'a cast on transitiveMembers is an advanced query')
  t.match(await rawGraph(w, `${cast}?$count=true`, { ConsistencyLevel: 'eventual' }), { status: 200, body: { '@odata.count': 2 } })
  t.match(await rawGraph(w, `/v1.0/groups/${outer.id}/members`), { status: 200, body: { value: [{ '@odata.type': '#microsoft.graph.user', id: id(1) }, { '@odata.type': '#microsoft.graph.group', id: inner.id }] } }, 'members: direct, users and groups')
})
