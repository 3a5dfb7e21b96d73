import t from 'tap'
import { graphErrorBody, startHarness } from './fixtures/harness.js'

const h = await startHarness()
t.teardown(() => h.close())
const client = h.client()

t.test('findUser by object id', async (t) => {
  t.same(await client.findUser(h.alice.id), {
    id: h.alice.id,
    displayName: 'Alice',
    mail: 'alice@contoso.example',
    userPrincipalName: 'alice@contoso.example',
  })
  t.equal((await client.findUser(h.alice.id.toUpperCase()))?.id, h.alice.id, 'ids compare case-insensitively')
})

t.test('findUser by UPN, case-insensitive', async (t) => {
  t.equal((await client.findUser('Bob@Contoso.Example'))?.id, h.bob.id)
})

t.test('findUser: 404 → undefined; like Graph, /users/{x} does not match on mail', async (t) => {
  t.equal(await client.findUser('nobody@contoso.example'), undefined)
  t.equal(await client.findUser('0f0f0f0f-0000-4000-8000-000000000000'), undefined)
  const dave = h.sim.addUser({ displayName: 'Dave', userPrincipalName: 'dave@contoso.onmicrosoft.example', mail: 'dave@contoso.example' })
  t.equal(await client.findUser('dave@contoso.example'), undefined, 'mail is not a key')
  t.equal((await client.findUser(dave.userPrincipalName))?.mail, 'dave@contoso.example')
  const token = await h.token()
  const res = await h.raw('GET', '/v1.0/users/nobody@contoso.example', { token })
  t.equal(res.status, 404)
  t.equal(graphErrorBody(res.body).code, 'Request_ResourceNotFound')
})

t.test('a UPN with characters that need escaping still resolves', async (t) => {
  const guest = h.sim.addUser({ displayName: 'Guest', userPrincipalName: "o'neil_fabrikam.example#EXT#@contoso.example" })
  t.equal((await client.findUser(guest.userPrincipalName))?.id, guest.id)
})

t.test('GET /users pages with $top and an https @odata.nextLink', async (t) => {
  const token = await h.token()
  const seen: string[] = []
  let next: string | undefined = '/v1.0/users?$top=2&$select=id,userPrincipalName'
  let pages = 0
  while (next !== undefined) {
    const res = await h.raw('GET', next, { token })
    t.equal(res.status, 200)
    const body = res.body as { value: Array<Record<string, unknown>>; '@odata.nextLink'?: string }
    for (const u of body.value) {
      t.same(Object.keys(u).sort(), ['id', 'userPrincipalName'], '$select is honoured')
      seen.push(String(u['id']))
    }
    const link = body['@odata.nextLink']
    if (link !== undefined) t.ok(link.startsWith(`${h.sim.url}/v1.0/users?`), 'absolute https nextLink on the simulator')
    next = link?.slice(h.sim.url.length)
    pages++
  }
  t.same(seen, h.sim.users.map((u) => u.id))
  t.equal(pages, Math.ceil(h.sim.users.length / 2))
  const defaults = await h.raw('GET', '/v1.0/users', { token })
  t.match((defaults.body as { value: unknown[] }).value[0], { businessPhones: [], displayName: String, id: String, mail: String })
  for (const top of ['0', '1000', 'x']) {
    const bad = await h.raw('GET', `/v1.0/users?$top=${top}`, { token })
    t.equal(bad.status, 400, `$top=${top}`)
  }
})

t.test('unknown Graph paths are 400 BadRequest like Graph', async (t) => {
  const token = await h.token()
  const res = await h.raw('GET', '/v1.0/nonsense', { token })
  t.equal(res.status, 400)
  t.match(graphErrorBody(res.body).message, /segment 'nonsense'/)
})
