import { execFile } from 'node:child_process'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { ConfigError, parseGatewayConfig } from '../../gateway/src/config/load.js'

const run = promisify(execFile)

function problems(input: unknown, env: Record<string, string> = {}): string[] {
  try {
    parseGatewayConfig(input, adapterRegistry, 'gateway.json', env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return ['(accepted)']
}

const osbiz = (password: unknown) => ({ id: 'osbiz-main', type: 'osbiz', host: '10.0.0.5', port: 8800, applicationId: 'presence-gateway', username: 'cstauser', password, users: [] })
const innovaphone = (appPassword: unknown) => ({ id: 'ipbx', type: 'innovaphone', host: 'pbx.lan', appName: 'presencegateway', appPassword })

t.test('the box refuses the examples\' placeholders for its relay and PBX passwords, all in one report', async (t) => {
  const found = problems({
    relay: { url: 'mqtt://relay:1883', username: 'gw', password: 'change-me-to-the-password-from-the-relay' },
    connectors: [osbiz('change-me'), innovaphone('change-me-to-the-App-object-password')],
  })
  t.same(found, [
    '/relay/password: still the example\'s placeholder: replace it with a real secret (make one with "openssl rand -base64 32")',
    '/connectors/0 (osbiz-main)/password: still the example\'s placeholder: replace it with a real secret (make one with "openssl rand -base64 32")',
    '/connectors/1 (ipbx)/appPassword: still the example\'s placeholder: replace it with a real secret (make one with "openssl rand -base64 32")',
  ])
})

t.test('box secrets come from environment variables or 0600 files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'box-secrets-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'pbx-password')
  await writeFile(file, 'csta-secret\n')
  await chmod(file, 0o600)
  const config = parseGatewayConfig({
    relay: { url: 'mqtt://relay:1883', username: 'gw', password: { env: 'GATEWAY_RELAY_PASSWORD' } },
    connectors: [osbiz({ file }), innovaphone({ env: 'INNOVAPHONE_APP_PASSWORD' })],
  }, adapterRegistry, 'gateway.json', { GATEWAY_RELAY_PASSWORD: 'relay-pw', INNOVAPHONE_APP_PASSWORD: 'app-pw' })
  t.equal(config.relay.password, 'relay-pw')
  t.equal(config.connectors[0]?.['password'], 'csta-secret')
  t.equal(config.connectors[1]?.['appPassword'], 'app-pw')

  await chmod(file, 0o644)
  t.same(problems({ relay: { url: 'mqtt://relay:1883' }, connectors: [osbiz({ file }), innovaphone({ env: 'UNSET' })] }), [
    `/connectors/0 (osbiz-main)/password: the secret file ${file} can be read by other users (mode 644): run "chmod 600 ${file}" and start again`,
    '/connectors/1 (ipbx)/appPassword: the environment variable UNSET is not set or empty: set it in the service\'s environment (e.g. an EnvironmentFile in its systemd unit)',
  ])
})

t.test('the box examples take their secrets from the environment or files; --check exits 2 without them', async (t) => {
  const example = JSON.parse(await readFile('gateway/examples/gateway.innovaphone.example.json', 'utf8')) as unknown
  t.equal(parseGatewayConfig(example, adapterRegistry, 'example', { GATEWAY_RELAY_PASSWORD: 'r', INNOVAPHONE_APP_PASSWORD: 'a' }).relay.password, 'r')
  const cli = ['--import', 'tsx', 'gateway/src/main.ts', '--config', 'gateway/examples/gateway.example.json', '--check']
  const { OSBIZ_MAIN_PASSWORD, ...rest } = process.env
  void OSBIZ_MAIN_PASSWORD
  const refused = await run(process.execPath, cli, { env: rest, timeout: 60_000 }).then(() => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => err)
  t.equal(refused.code, 2)
  t.match(refused.stderr, /\/connectors\/0 \(osbiz-main\)\/password: the environment variable OSBIZ_MAIN_PASSWORD is not set/)
  const accepted = await run(process.execPath, cli, { env: { ...rest, OSBIZ_MAIN_PASSWORD: 'pbx-pw' }, timeout: 60_000 })
  t.match(accepted.stdout, /OK \(1 connector\(s\)\)/)
})
