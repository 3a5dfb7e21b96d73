import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { ConfigError, parseGatewayConfig } from '../../gateway/src/config/load.js'
import { call, startBox, type BoxUnderTest } from '../box-ui/fixtures/box-harness.js'
import type { TapTest } from '../helpers/tap-types.js'

// The cross-field rules of each PBX type (one field against another, one list entry against the rest) run
// where a config enters the box: the config file at boot, and the setup page's Save and Test connection.

const PIN = 'AB:'.repeat(31) + 'AB'
const AVAYA_BOTH = { host: 'ipo.example', username: 'gwservice', password: 'pw', tls: { caFile: '/etc/pbx/ipo-ca.pem', pinnedSha256: PIN } }
const INNOVAPHONE_BOTH = { host: 'pbx.example', appName: 'presence', appPassword: 'pw', caFile: '/etc/pbx/inno-ca.pem', certificateSha256: PIN }
const OSBIZ_TWICE = { host: 'osbiz.example', applicationId: 'gw', users: [{ extension: '201', name: 'Alice' }, { extension: '201', name: 'Bob' }] }

async function bootProblems(t: TapTest, connectors: unknown[]): Promise<string[]> {
  const dataDir = await mkdtemp(join(tmpdir(), 'connector-check-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  try {
    parseGatewayConfig({ relay: { url: 'mqtts://127.0.0.1:1' }, dataDir, connectors }, adapterRegistry, 'gateway.json', {})
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

t.test('boot refuses a config file whose connector breaks a cross-field rule, naming the connector and the field', async (t) => {
  t.match(await bootProblems(t, [{ id: 'ipo', type: 'avaya-ipo', ...AVAYA_BOTH }]),
    [/^\/connectors\/0 \(ipo\)\/tls: set either caFile or pinnedSha256, not both/])
  t.match(await bootProblems(t, [{ id: 'inno', type: 'innovaphone', ...INNOVAPHONE_BOTH }]),
    [/^\/connectors\/0 \(inno\)\/certificateSha256: set either caFile or certificateSha256, not both/])
  t.match(await bootProblems(t, [{ id: 'inno', type: 'innovaphone', host: 'pbx.example', appName: 'presence', appPassword: 'pw', tls: false, certificateSha256: PIN }]),
    [/^\/connectors\/0 \(inno\)\/certificateSha256: a certificate pin only applies to wss:\/\//])
  t.match(await bootProblems(t, [{ id: 'osbiz', type: 'osbiz', ...OSBIZ_TWICE }]),
    [/^\/connectors\/0 \(osbiz\)\/users\/1\/extension: duplicate extension 201/])
  t.same(await bootProblems(t, [{ id: 'ipo', type: 'avaya-ipo', ...AVAYA_BOTH, tls: { pinnedSha256: PIN } }]), [], 'the pin alone is fine')
})

async function signedIn(box: BoxUnderTest): Promise<Record<string, string>> {
  const setup = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: 'correct horse battery', setupCode: box.setupCode() } })
  if (setup.status !== 200) throw new Error(`setup failed: ${setup.status} ${setup.text}`)
  return { cookie: String(setup.headers['set-cookie']).split(';')[0] ?? '', 'x-csrf-token': (JSON.parse(setup.text) as { csrfToken: string }).csrfToken }
}

t.test('the setup page refuses to save or test such a connector, in words, and keeps nothing', async (t) => {
  const box = await startBox({ build: false, connectionTestTimeoutMs: 2000 })
  t.teardown(() => box.close())
  const headers = await signedIn(box)
  const cases = [
    { id: 'ipo', type: 'avaya-ipo', config: AVAYA_BOTH, field: 'tls', message: /set either caFile or pinnedSha256, not both/ },
    { id: 'inno', type: 'innovaphone', config: INNOVAPHONE_BOTH, field: 'certificateSha256', message: /set either caFile or certificateSha256, not both/ },
    { id: 'osbiz', type: 'osbiz', config: OSBIZ_TWICE, field: 'users', message: /duplicate extension 201/ },
  ]
  for (const { id, type, config, field, message } of cases) {
    const saved = await call(`${box.origin}/api/connectors/${id}`, { method: 'PUT', headers, body: { type, config } })
    t.equal(saved.status, 400, `${type}: Save is refused`)
    t.match(JSON.parse(saved.text), { error: { code: 'WEB_CONNECTOR_INVALID', field, message } })
    const tested = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers, body: { id, type, config } })
    t.equal(tested.status, 400, `${type}: Test connection is refused`)
    t.match(JSON.parse(tested.text), { error: { code: 'WEB_CONNECTOR_INVALID', field, message } })
  }
  const list = await call(`${box.origin}/api/connectors`, { method: 'GET', headers })
  t.same(JSON.parse(list.text), { connectors: [] }, 'no connector was stored')
})
