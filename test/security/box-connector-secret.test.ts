import { createServer, type Socket } from 'node:net'
import t from 'tap'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { call, startBox, type BoxUnderTest } from '../box-ui/fixtures/box-harness.js'
import type { TapTest } from '../helpers/tap-types.js'

const PASSWORD = 'correct horse battery'
const PBX_SECRET = 'csta-secret-7f3a'

/** A host on the LAN that an attacker controls: records every connection and every byte it receives. */
async function listeningAttacker(t: TapTest): Promise<{ port: number; connections: () => number; received: () => string }> {
  let connections = 0
  let received = ''
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1') })
    socket.on('error', () => undefined)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }))
  return { port: (server.address() as { port: number }).port, connections: () => connections, received: () => received }
}

async function signedIn(box: BoxUnderTest): Promise<{ headers: Record<string, string> }> {
  const setup = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: PASSWORD, setupCode: box.setupCode() } })
  if (setup.status !== 200) throw new Error(`setup failed: ${setup.status} ${setup.text}`)
  const cookie = String(setup.headers['set-cookie']).split(';')[0] ?? ''
  return { headers: { cookie, 'x-csrf-token': (JSON.parse(setup.text) as { csrfToken: string }).csrfToken } }
}

t.test('the stored PBX password is never sent to another host, port or TLS setting', async (t) => {
  const pbx = new OsbizSimulator({ users: [{ extension: '201', name: 'Alice' }], credentials: { applicationId: 'presence-gateway', username: 'cstauser', password: PBX_SECRET } })
  const { port: pbxPort } = await pbx.start()
  t.teardown(() => pbx.stop())
  const attacker = await listeningAttacker(t)
  const box = await startBox({ build: false, connectionTestTimeoutMs: 3000 })
  t.teardown(() => box.close())
  const { headers } = await signedIn(box)
  const osbiz = (port: number, password?: string) => ({
    host: '127.0.0.1', port, applicationId: 'presence-gateway', username: 'cstauser', ...(password !== undefined ? { password } : {}), users: [{ extension: '201', name: 'Alice' }],
  })
  const saved = await call(`${box.origin}/api/connectors/pbx1`, { method: 'PUT', headers, body: { type: 'osbiz', config: osbiz(pbxPort, PBX_SECRET) } })
  t.equal(saved.status, 200, 'a connector with its password is saved')

  // Same host and port, password left empty: the stored one is used (the installer need not type it again).
  const same = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'pbx1', type: 'osbiz', config: { ...osbiz(pbxPort), password: '' } } })
  t.match(JSON.parse(same.text), { ok: true }, 'unchanged address: the stored password is reused')
  // Editing the user list only keeps it too.
  const moreUsers = await call(`${box.origin}/api/connectors/pbx1`, { method: 'PUT', headers, body: { type: 'osbiz', config: { ...osbiz(pbxPort), users: [{ extension: '201', name: 'Alice' }, { extension: '202', name: 'Bob' }] } } })
  t.equal(moreUsers.status, 200, 'the user list can be changed without typing the password again')

  // Another port (the attacker's), password empty: refused in words, and nothing reaches the attacker.
  for (const config of [{ ...osbiz(attacker.port), password: '' }, osbiz(attacker.port)]) {
    const test = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'pbx1', type: 'osbiz', config } })
    t.equal(test.status, 400, 'Test connection to another address without the password is refused')
    t.match(JSON.parse(test.text), { error: { code: 'WEB_SECRET_NEEDED', field: 'password', message: /type the password again/i } })
    const put = await call(`${box.origin}/api/connectors/pbx1`, { method: 'PUT', headers, body: { type: 'osbiz', config } })
    t.equal(put.status, 400, 'and so is saving it')
    t.match(JSON.parse(put.text), { error: { code: 'WEB_SECRET_NEEDED', field: 'password' } })
  }
  const otherHost = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'pbx1', type: 'osbiz', config: { ...osbiz(pbxPort), host: 'localhost' } } })
  t.equal(otherHost.status, 400, 'another host name for the same machine needs the password too')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(attacker.connections(), 0, 'the attacker\'s host never got a connection')
  t.notMatch(attacker.received(), PBX_SECRET, 'nor the stored secret')
  t.ok(box.logRing.lines().some((l) => l.msg.includes('stored secret not reused')), 'the refusal is logged')

  // Typed again, it may go to the new address (the installer knows it).
  const typed = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'pbx1', type: 'osbiz', config: osbiz(attacker.port, 'typed-by-installer') } })
  t.equal(typed.status, 200, 'with the password typed again the test runs')
  t.ok(attacker.connections() > 0, 'and connects to the new address')
  t.notMatch(attacker.received(), PBX_SECRET, 'which still never sees the stored secret')
  const list = await call(`${box.origin}/api/connectors`, { method: 'GET', headers })
  t.notMatch(list.text, PBX_SECRET, 'the list never shows it')
  t.match(JSON.parse(list.text), { connectors: [{ id: 'pbx1', config: { port: pbxPort } }] }, 'the stored connector still points at the real PBX')
})

t.test('every adapter marks its secrets in its schema; nested TLS settings bind the secret too', async (t) => {
  const box = await startBox({ build: false, connectionTestTimeoutMs: 2000 })
  t.teardown(() => box.close())
  const { headers } = await signedIn(box)
  const types = JSON.parse((await call(`${box.origin}/api/connector-types`, { method: 'GET', headers })).text) as { types: Array<{ type: string; schema: { properties: Record<string, { writeOnly?: boolean }> }; secretFields: string[] }> }
  const byType = new Map(types.types.map((x) => [x.type, x]))
  t.same(byType.get('osbiz')?.secretFields, ['password'])
  t.same(byType.get('avaya-ipo')?.secretFields, ['password'])
  t.same(byType.get('innovaphone')?.secretFields, ['appPassword'])
  for (const [type, field] of [['osbiz', 'password'], ['avaya-ipo', 'password'], ['innovaphone', 'appPassword']] as const) {
    t.equal(byType.get(type)?.schema.properties[field]?.writeOnly, true, `${type}.${field} is marked writeOnly in its schema`)
  }

  const attacker = await listeningAttacker(t)
  const innovaphone = { host: '127.0.0.1', port: attacker.port, tls: true, appName: 'presence', certificateSha256: 'AA:'.repeat(31) + 'AA' }
  t.equal((await call(`${box.origin}/api/connectors/inno`, { method: 'PUT', headers, body: { type: 'innovaphone', config: { ...innovaphone, appPassword: 'app-secret-1' } } })).status, 200, 'innovaphone connector saved')
  const plain = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'inno', type: 'innovaphone', config: { ...innovaphone, tls: false, appPassword: '' } } })
  t.equal(plain.status, 400, 'switching TLS off needs the app password again')
  t.match(JSON.parse(plain.text), { error: { code: 'WEB_SECRET_NEEDED', field: 'appPassword' } })
  const repin = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'inno', type: 'innovaphone', config: { ...innovaphone, certificateSha256: 'BB:'.repeat(31) + 'BB' } } })
  t.equal(repin.status, 400, 'another certificate pin needs it too')

  const avaya = { host: '127.0.0.1', port: attacker.port, username: 'svc', tls: { pinnedSha256: 'AA:'.repeat(31) + 'AA' } }
  t.equal((await call(`${box.origin}/api/connectors/ipo`, { method: 'PUT', headers, body: { type: 'avaya-ipo', config: { ...avaya, password: 'ipo-secret-1' } } })).status, 200, 'avaya connector saved')
  const repinAvaya = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'ipo', type: 'avaya-ipo', config: { ...avaya, tls: { pinnedSha256: 'BB:'.repeat(31) + 'BB' }, password: '' } } })
  t.equal(repinAvaya.status, 400, 'a different pin inside tls {} needs the password again')
  t.match(JSON.parse(repinAvaya.text), { error: { code: 'WEB_SECRET_NEEDED', field: 'password' } })
  const retype = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id: 'ipo', type: 'innovaphone', config: { ...innovaphone, appPassword: '' } } })
  t.equal(retype.status, 400, 'another PBX type on the same id does not inherit the secret')
})
