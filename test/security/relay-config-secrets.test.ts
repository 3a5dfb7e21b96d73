import { execFile } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import type { TapTest } from '../helpers/tap-types.js'
import { ConfigError, loadRelayConfig, parseRelayConfig } from '../../cloud-relay/src/config/load.js'

const run = promisify(execFile)
const EXAMPLE = 'cloud-relay/examples/relay.example.json'
const TOKEN = 'Qm9vdHN0cmFwLXRva2VuLW9mLTMyLWNoYXJz'
const NO_ENV = {}

/** The problems a config is refused with (fails the test when it is accepted). */
function problems(t: TapTest, input: unknown, env: Record<string, string> = NO_ENV): string[] {
  try {
    parseRelayConfig(input, 'relay.json', env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  t.fail('the config was accepted')
  return []
}

async function tempDir(t: TapTest): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'relay-secrets-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function secretFile(dir: string, name: string, content: string, mode: number): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, content)
  await chmod(file, mode)
  return file
}

const tenant = (graph: Record<string, unknown>, gateways: unknown[] = []) => ({ id: 'contoso', graph: { tenantId: 't', clientId: 'c', ...graph }, gateways })

t.test('the examples\' change-me placeholders are refused, every one listed in one report', async (t) => {
  const found = problems(t, {
    broker: { relayPassword: 'change-me-long-random' },
    tenants: [tenant({ clientSecret: 'change-me' }, [{ id: 'box-1', password: 'CHANGE-ME-please' }])],
    http: { apiToken: 'change-me-to-a-long-random-token-0123456789' },
  })
  t.equal(found.length, 4, found.join('\n'))
  for (const path of ['/broker/relayPassword', '/tenants/0/graph/clientSecret', '/tenants/0/gateways/0/password', '/http/apiToken']) {
    t.ok(found.some((p) => p.startsWith(`${path}: still the example's placeholder`)), `${path} is named`)
  }
  t.notOk(found.join('\n').includes('change-me'), 'the report does not repeat the value')
})

t.test('API tokens under 32 characters are refused with how to make one', async (t) => {
  for (const apiToken of ['', 'x', 'test-token-0123456789abcdef']) {
    const found = problems(t, { broker: { relayPassword: 'relay-secret' }, http: { apiToken } })
    t.equal(found.length, 1, found.join('\n'))
    t.match(found[0], /^\/http\/apiToken: too short: \d+ characters, at least 32 are needed; make one with "openssl rand -base64 32"/)
  }
  t.equal(parseRelayConfig({ broker: { relayPassword: 'relay-secret' }, http: { apiToken: TOKEN } }).http.apiToken, TOKEN)
})

t.test('secrets come from environment variables', async (t) => {
  const config = parseRelayConfig({
    broker: { relayPassword: { env: 'RELAY_BROKER_PASSWORD' } },
    database: { url: { env: 'RELAY_DATABASE_URL' } },
    tenants: [tenant({ clientSecret: { env: 'GRAPH_SECRET' } }, [{ id: 'box-1', password: { env: 'BOX1_PASSWORD' } }])],
    http: { apiToken: { env: 'RELAY_API_TOKEN' } },
  }, 'relay.json', {
    RELAY_BROKER_PASSWORD: 'broker-pw', RELAY_DATABASE_URL: 'postgres://relay:pw@db/relay', GRAPH_SECRET: 'graph~secret', BOX1_PASSWORD: 'box-password-1', RELAY_API_TOKEN: TOKEN,
  })
  t.equal(config.broker.relayPassword, 'broker-pw')
  t.equal(config.database.url, 'postgres://relay:pw@db/relay')
  t.equal(config.tenants[0]?.graph?.clientSecret, 'graph~secret')
  t.equal(config.tenants[0]?.gateways[0]?.password, 'box-password-1')
  t.equal(config.http.apiToken, TOKEN)

  const found = problems(t, {
    broker: { relayPassword: { env: 'RELAY_BROKER_PASSWORD' } },
    http: { apiToken: { env: 'RELAY_API_TOKEN' } },
    tenants: [tenant({ clientSecret: { env: 'GRAPH_SECRET' } })],
  }, { RELAY_API_TOKEN: 'too-short', GRAPH_SECRET: 'change-me' })
  t.equal(found.length, 3, found.join('\n'))
  t.match(found.join('\n'), /\/broker\/relayPassword: the environment variable RELAY_BROKER_PASSWORD is not set or empty/)
  t.match(found.join('\n'), /\/http\/apiToken: too short \(from the environment variable RELAY_API_TOKEN\): 9 characters/)
  t.match(found.join('\n'), /\/tenants\/0\/graph\/clientSecret: still the example's placeholder \(from the environment variable GRAPH_SECRET\)/)
})

t.test('secrets come from files readable by the service only', async (t) => {
  const dir = await tempDir(t)
  const good = await secretFile(dir, 'graph-secret', 'graph~secret\n', 0o600)
  const token = await secretFile(dir, 'api-token', `${TOKEN}\n`, 0o400)
  const config = parseRelayConfig({
    broker: { relayPassword: 'relay-secret' }, tenants: [tenant({ clientSecret: { file: good } })], http: { apiToken: { file: token } },
  }, 'relay.json', NO_ENV)
  t.equal(config.tenants[0]?.graph?.clientSecret, 'graph~secret', 'the final newline is not part of the secret')
  t.equal(config.http.apiToken, TOKEN)

  const open = await secretFile(dir, 'open-secret', 'graph~secret\n', 0o644)
  const group = await secretFile(dir, 'group-token', TOKEN, 0o640)
  const empty = await secretFile(dir, 'empty', '\n', 0o600)
  const found = problems(t, {
    broker: { relayPassword: { file: empty } },
    tenants: [tenant({ clientSecret: { file: open } }, [{ id: 'box-1', password: { file: join(dir, 'missing') } }])],
    http: { apiToken: { file: group } },
  })
  t.equal(found.length, 4, found.join('\n'))
  t.ok(found.includes(`/tenants/0/graph/clientSecret: the secret file ${open} can be read by other users (mode 644): run "chmod 600 ${open}" and start again`))
  t.ok(found.includes(`/http/apiToken: the secret file ${group} can be read by other users (mode 640): run "chmod 600 ${group}" and start again`))
  t.ok(found.includes(`/broker/relayPassword: the secret file ${empty} is empty`))
  t.ok(found.includes(`/tenants/0/gateways/0/password: cannot read the secret file ${join(dir, 'missing')}: ENOENT`))
  t.notOk(found.join('\n').includes('graph~secret'), 'no secret in the report')

  t.match(problems(t, { broker: { relayPassword: { path: good } } }), ['/broker/relayPassword: give the secret as a string, {"env": "VARIABLE"} or {"file": "/path/to/file"}'])
})

t.test('key files the relay reads are refused when others can read them', async (t) => {
  const dir = await tempDir(t)
  const key = await secretFile(dir, 'graph.key', '-----BEGIN PRIVATE KEY-----\n', 0o644)
  const tlsKey = await secretFile(dir, 'https.key', '-----BEGIN PRIVATE KEY-----\n', 0o604)
  const sealKey = await secretFile(dir, 'seal.key', 'x\n', 0o660)
  const found = problems(t, {
    broker: { relayPassword: 'relay-secret' },
    secrets: { sealKeyFile: sealKey },
    tenants: [tenant({ certificateFile: join(dir, 'graph.pem'), privateKeyFile: key })],
    http: { tls: { certFile: join(dir, 'https.pem'), keyFile: tlsKey } },
  })
  t.equal(found.length, 3, found.join('\n'))
  t.ok(found.includes(`/tenants/0/graph/privateKeyFile: the secret file ${key} can be read by other users (mode 644): run "chmod 600 ${key}" and start again`))
  t.ok(found.includes(`/http/tls/keyFile: the secret file ${tlsKey} can be read by other users (mode 604): run "chmod 600 ${tlsKey}" and start again`))
  t.ok(found.includes(`/secrets/sealKeyFile: the secret file ${sealKey} can be read by other users (mode 660): run "chmod 600 ${sealKey}" and start again`))
  await chmod(key, 0o600)
  await chmod(tlsKey, 0o600)
  await chmod(sealKey, 0o600)
  t.ok(parseRelayConfig({
    broker: { relayPassword: 'relay-secret' }, secrets: { sealKeyFile: sealKey },
    tenants: [tenant({ certificateFile: join(dir, 'graph.pem'), privateKeyFile: key })], http: { tls: { certFile: join(dir, 'https.pem'), keyFile: tlsKey } },
  }, 'relay.json', NO_ENV), 'accepted once chmod 600')
})

t.test('the example takes its secrets from the environment and the relay exits 2 without them', async (t) => {
  const example = JSON.parse(await readFile(EXAMPLE, 'utf8')) as unknown
  const env = { RELAY_BROKER_PASSWORD: 'broker-password', CONTOSO_GRAPH_CLIENT_SECRET: 'graph~secret', RELAY_API_TOKEN: TOKEN }
  t.equal(parseRelayConfig(example, EXAMPLE, env).http.apiToken, TOKEN)
  await t.rejects(loadRelayConfig(join(await tempDir(t), 'none.json')), ConfigError)

  const cli = ['--import', 'tsx', 'cloud-relay/src/main.ts', '--config', EXAMPLE, '--check']
  const { RELAY_BROKER_PASSWORD, CONTOSO_GRAPH_CLIENT_SECRET, RELAY_API_TOKEN, ...rest } = process.env
  void RELAY_BROKER_PASSWORD, void CONTOSO_GRAPH_CLIENT_SECRET, void RELAY_API_TOKEN
  const refused = await run(process.execPath, cli, { env: rest, timeout: 60_000 }).then(() => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => err)
  t.equal(refused.code, 2, 'a missing secret exits 2 like every config error')
  for (const name of ['RELAY_BROKER_PASSWORD', 'CONTOSO_GRAPH_CLIENT_SECRET', 'RELAY_API_TOKEN']) t.match(refused.stderr, name, `names ${name}`)
  t.match(refused.stderr, /3 problem\(s\)/)
  const accepted = await run(process.execPath, cli, { env: { ...rest, ...env }, timeout: 60_000 })
  t.match(accepted.stdout, /OK \(1 tenant\(s\)\)/)
})
