import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)

async function node(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, args, { timeout: 60_000, env: { ...process.env, ...env } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

t.test('the build bundles two services and the gateway never reaches Microsoft code', async (t) => {
  const build = await node(['--import', 'tsx', 'scripts/build.ts'])
  t.equal(build.code, 0, `build succeeds: ${build.stderr}`)
  t.match(build.stdout, /dist\/gateway\.js: .* KiB/)
  const gateway = await readFile('dist/gateway.js', 'utf8')
  const relay = await readFile('dist/cloud-relay.js', 'utf8')
  for (const name of ['@azure/msal-node', '@microsoft/microsoft-graph-client', 'graph-sim']) {
    t.notOk(gateway.includes(name), `dist/gateway.js does not contain ${name}`)
  }
  t.ok(relay.includes('@azure/msal-node'), 'the relay bundle does use MSAL (so the check above can fail)')

  // Each PBX adapter is a chunk the gateway imports when a connector of its type runs: its wire packages are not
  // loaded at start, and a box loads only its own PBX's.
  const staticImports = (text: string) => new Set([...text.matchAll(/^import\b[^;]*?from\s*"([^"]+)"/gm)].map((m) => m[1]!))
  const entry = staticImports(gateway)
  for (const name of ['fast-xml-parser', 'protobufjs', 'ws']) t.notOk(entry.has(name), `dist/gateway.js does not import ${name} at start`)
  const chunks = await readdir('dist/gateway-chunks')
  t.notOk(/[^\x00-\x7f]/.test(gateway), 'dist/gateway.js is ASCII: V8 keeps its source at one byte a character, not two')
  // On Node 24 an ESM import of node:http loads Node's internal undici through its lazy WebSocket export (11 MiB).
  for (const file of ['dist/gateway.js', ...chunks.filter((f) => f.endsWith('.js')).map((f) => join('dist/gateway-chunks', f))]) {
    t.notOk(staticImports(await readFile(file, 'utf8')).has('node:http'), `${file} does not import node:http (it requires it)`)
  }
  for (const [pbx, name] of [['osbiz', 'fast-xml-parser'], ['avaya-ipo', 'protobufjs'], ['innovaphone', 'ws']] as const) {
    const chunk = chunks.find((file) => file.startsWith(`${pbx}-`) && file.endsWith('.js'))
    t.ok(chunk, `dist/gateway-chunks/ has the ${pbx} adapter`)
    if (chunk) t.ok(staticImports(await readFile(join('dist/gateway-chunks', chunk), 'utf8')).has(name), `and it imports ${name}`)
  }
})

t.test('production entry points', async (t) => {
  const gatewayHelp = await node(['dist/gateway.js', '--help'])
  t.equal(gatewayHelp.code, 0)
  t.match(gatewayHelp.stdout, /--config FILE/)
  const relayHelp = await node(['dist/cloud-relay.js', '--help'])
  t.equal(relayHelp.code, 0)
  t.match(relayHelp.stdout, /DATABASE_URL/)

  const gatewayCheck = await node(['dist/gateway.js', '--config', 'gateway/examples/gateway.example.json', '--check'], { OSBIZ_MAIN_PASSWORD: 'pbx-password' })
  t.equal(gatewayCheck.code, 0, `example gateway config is valid: ${gatewayCheck.stderr}`)
  // The example takes its secrets from the environment.
  const relayCheck = await node(['dist/cloud-relay.js', '--config', 'cloud-relay/examples/relay.example.json', '--check'], {
    RELAY_BROKER_PASSWORD: 'broker-password', CONTOSO_GRAPH_CLIENT_SECRET: 'graph-secret', RELAY_API_TOKEN: 'an-api-token-of-at-least-32-characters',
  })
  t.equal(relayCheck.code, 0, `example relay config is valid: ${relayCheck.stderr}`)

  const dir = await mkdtemp(join(tmpdir(), 'entry-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const bad = join(dir, 'bad.json')
  await writeFile(bad, JSON.stringify({ gatewayId: 'has space', relay: {}, connectors: [{ id: 'x', type: 'nopbx' }] }))
  const badCheck = await node(['dist/gateway.js', '--config', bad])
  t.equal(badCheck.code, 2, 'a bad config exits with 2')
  t.match(badCheck.stderr, /gatewayId/, 'names the bad id')
  t.match(badCheck.stderr, /relay\/url/, 'names the missing relay URL')
  t.match(badCheck.stderr, /unknown PBX type "nopbx"; valid types: osbiz/, 'lists the valid PBX types')
  t.match(badCheck.stderr, /Fix the file/, 'says what to do next')
  const missing = await node(['dist/gateway.js'])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /missing --config FILE/)
})
