/**
 * npm run container:test: builds the image (layer cache: seconds when nothing changed), runs the gateway in it
 * with a /data volume and checks its setup page over HTTPS from the host, claims the box, restarts it, runs the
 * relay variant, checks the host's CA bundle did not end up in the image, and removes what it made.
 */
import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { buildImage, DEFAULT_BASE, DEFAULT_TAG, hostCaBundle, imageExists, must, progress, run, runtimeFlags, parseCommandLine } from './podman.js'

const HELP = `npm run container:test -- [options]

Builds the image (npm run container:build; the layer cache makes an unchanged rebuild take seconds), then, as
root with podman: runs the gateway with a fresh /data volume and the setup page published on 127.0.0.1 only,
checks the page answers over HTTPS with the certificate the gateway logged, the process runs as the image's
user under tini on Node 24, the HEALTHCHECK passes, the first visit claims the box with the setup code from the
container's log, and a restart keeps the certificate and the claim (both on /data). Then the relay variant
(node dist/cloud-relay.js) answers /healthz, and the host's CA bundle (a build secret) is nowhere in the image.
Removes its containers and volumes at the end. Prints each check with its time, the build time and the size.

Options:
  --tag NAME     the image (default ${DEFAULT_TAG})
  --no-build     test the image as it is (it must exist)
  --keep         leave the containers and volumes for a look (names printed)
  --help         this text

Exit codes: 0 every check passed, 1 a check failed, 2 bad command line.
`

const values = parseCommandLine('container:test', HELP, {
  tag: { type: 'string', default: DEFAULT_TAG },
  'no-build': { type: 'boolean', default: false },
  keep: { type: 'boolean', default: false },
})
const image = values.tag
const { runtime, ulimits } = runtimeFlags()

let passed = 0
let failed = 0
function check(ok: boolean, what: string, detail = ''): boolean {
  if (ok) passed++
  else failed++
  progress(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? `: ${detail}` : ''}`)
  return ok
}

interface Answer { status: number; body: string; fingerprint256: string | undefined }

/**
 * One request to the published port. The setup page's certificate is made by the box and signed by no CA: the
 * caller compares the fingerprint returned here with the one the gateway logged (a pin), as an installer does.
 */
function get(url: string, options: { method?: string; body?: string; timeoutMs?: number } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const target = new URL(url)
    const headers: Record<string, string> = { host: `localhost:${target.port}` }
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json'
      headers.origin = `https://localhost:${target.port}`
    }
    const req = (target.protocol === 'https:' ? httpsRequest : httpRequest)(target, { method: options.method ?? 'GET', headers, rejectUnauthorized: false, timeout: options.timeoutMs ?? 5000 }, (res) => {
      const socket = res.socket as TLSSocket
      const fingerprint256 = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate().fingerprint256 : undefined
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint256 }))
    })
    req.on('timeout', () => req.destroy(new Error('no answer in time')))
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Polls until the URL answers (any status); returns the seconds it took, or undefined after the deadline. */
async function waitForAnswer(url: string, container: string, deadlineS: number): Promise<number | undefined> {
  const t0 = Date.now()
  while (Date.now() - t0 < deadlineS * 1000) {
    try {
      await get(url, { timeoutMs: 2000 })
      return (Date.now() - t0) / 1000
    } catch {
      const state = (await run('podman', ['inspect', '--format', '{{.State.Status}}', container])).stdout.trim()
      if (state !== 'running') return undefined
      await new Promise((r) => setTimeout(r, 250))
    }
  }
  return undefined
}

async function publishedPort(container: string, port: number): Promise<number> {
  const out = (await must('podman', ['port', container, `${port}/tcp`], 'reading the published port')).trim()
  const match = /^127\.0\.0\.1:(\d+)$/m.exec(out)
  if (!match?.[1]) throw new Error(`${container} port ${port} is not published on 127.0.0.1 only: ${out}`)
  return Number(match[1])
}

async function exec(container: string, args: string[]): Promise<string> {
  return (await run('podman', ['exec', container, ...args])).stdout.trim()
}

function json(text: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null ? value as Record<string, unknown> : {}
  } catch {
    return {}
  }
}

/** The gateway's log line with the setup page's fingerprint, and the setup code from its console banner. */
async function readGatewayLog(container: string): Promise<{ fingerprint: string | undefined; setupCode: string | undefined; text: string }> {
  const logs = await run('podman', ['logs', container])
  const text = logs.stdout + logs.stderr
  let fingerprint: string | undefined
  for (const line of text.split('\n')) {
    const entry = json(line)
    if (typeof entry.fingerprint256 === 'string') fingerprint = entry.fingerprint256
  }
  return { fingerprint, setupCode: /enter the setup code:\s+(\S+)/.exec(text)?.[1], text }
}

/** Certificates in the host's bundle that Debian's bundle in the image lacks: the local CAs (the egress proxy's). */
async function hostOnlyCertificateLines(hostBundle: string, imageBundle: string): Promise<string[]> {
  const blocks = (text: string) => text.split('-----END CERTIFICATE-----').map((b) => b.replace(/^[\s\S]*-----BEGIN CERTIFICATE-----/, '').replace(/\s+/g, '')).filter((b) => b.length > 0)
  const inImage = new Set(blocks(imageBundle))
  // The body's fourth 64-character line: unique to the certificate, and a whole line in any PEM copy of it, so
  // grep -F finds it (a slice across a line break never matches).
  return blocks(await readFile(hostBundle, 'utf8')).filter((b) => !inImage.has(b)).map((b) => b.slice(192, 256))
}

const suffix = randomBytes(3).toString('hex')
const gatewayName = `pbxgw-ctest-${suffix}`
const relayName = `pbxrelay-ctest-${suffix}`
const volumes = [`pbxgw-ctest-data-${suffix}`, `pbxrelay-ctest-data-${suffix}`] as const
let configDir: string | undefined

async function cleanUp(): Promise<void> {
  if (values.keep) {
    progress(`kept: containers ${gatewayName} ${relayName}, volumes ${volumes.join(' ')}${configDir ? `, ${configDir}` : ''}`)
    return
  }
  await run('podman', ['rm', '--force', '--time', '5', gatewayName, relayName])
  await run('podman', ['volume', 'rm', '--force', ...volumes])
  if (configDir) await rm(configDir, { recursive: true, force: true })
  progress('removed the test containers and volumes')
}

async function testGateway(): Promise<void> {
  progress(`starting the gateway: ${gatewayName}, volume ${volumes[0]} on /data`)
  const t0 = Date.now()
  await must('podman', [...runtime, 'run', ...ulimits, '--detach', '--name', gatewayName, '--publish', '127.0.0.1::8443', '--volume', `${volumes[0]}:/data`, image], 'starting the gateway container')
  const port = await publishedPort(gatewayName, 8443)
  const base = `https://127.0.0.1:${port}`
  const upS = await waitForAnswer(`${base}/`, gatewayName, 90)
  if (!check(upS !== undefined, 'setup page answers over HTTPS', upS === undefined ? `no answer in 90 s; log:\n${(await readGatewayLog(gatewayName)).text}` : `${base}/ after ${((Date.now() - t0) / 1000).toFixed(1)} s from podman run`)) return
  const log = await readGatewayLog(gatewayName)
  const page = await get(`${base}/`)
  check(page.status === 200 && /<html/i.test(page.body), 'GET / is the setup page', `HTTP ${page.status}, ${page.body.length} bytes`)
  check(log.fingerprint !== undefined && page.fingerprint256 === log.fingerprint, 'the certificate served is the one the gateway logged', `${page.fingerprint256 ?? 'none'}`)
  const session = json((await get(`${base}/api/session`)).body)
  check(session.passwordSet === false && session.certificateFingerprint === log.fingerprint, 'a fresh box is unclaimed and shows the same fingerprint', JSON.stringify({ passwordSet: session.passwordSet }))
  check(log.setupCode !== undefined, 'the setup code is on the container\'s console', log.setupCode ?? 'not found')

  const uid = await exec(gatewayName, ['id', '-u'])
  check(uid === '10001', 'the gateway runs as the image\'s user pbx, not root', `uid ${uid}`)
  const pid1 = await exec(gatewayName, ['cat', '/proc/1/comm'])
  check(pid1 === 'tini', 'PID 1 is tini (signals and zombies)', pid1)
  const expectedNode = `v${(await must('scripts/fetch-node.sh', ['--print-version'], 'reading the pinned Node version')).trim()}`
  const nodeVersion = await exec(gatewayName, ['node', '--version'])
  check(nodeVersion === expectedNode, 'Node in the image is the box\'s Node', `${nodeVersion} (pinned ${expectedNode})`)
  const health = await run('podman', ['healthcheck', 'run', gatewayName])
  check(health.code === 0, 'the image\'s HEALTHCHECK passes', (health.stdout + health.stderr).trim() || 'healthy')

  const password = randomBytes(12).toString('base64url')
  const claim = await get(`${base}/api/setup`, { method: 'POST', body: JSON.stringify({ password, setupCode: log.setupCode }) })
  check(claim.status === 200, 'the first visit claims the box with the code from the console', `HTTP ${claim.status}`)

  const t1 = Date.now()
  await must('podman', ['restart', '--time', '10', gatewayName], 'restarting the gateway container')
  const againS = await waitForAnswer(`${base}/`, gatewayName, 90)
  if (!check(againS !== undefined, 'the setup page answers again after a restart', `after ${((Date.now() - t1) / 1000).toFixed(1)} s`)) return
  const after = await get(`${base}/api/session`)
  const afterSession = json(after.body)
  check(afterSession.passwordSet === true && after.fingerprint256 === log.fingerprint, 'the restart keeps the claim and the certificate (/data volume)', JSON.stringify({ passwordSet: afterSession.passwordSet }))
}

async function testRelay(): Promise<void> {
  configDir = await mkdtemp(join(tmpdir(), 'pbxrelay-ctest-'))
  // The smallest relay: embedded broker, PGlite and its seal key on /data, its HTTP port for the probe.
  const relayConfig = {
    broker: { mode: 'embedded', relayPassword: { env: 'RELAY_BROKER_PASSWORD' }, tls: { port: 8883 } },
    database: { pgliteDir: '/data/pglite' },
    secrets: { sealKeyFile: '/data/seal.key' },
    http: { host: '0.0.0.0', port: 8080 },
  }
  await writeFile(join(configDir, 'relay.json'), JSON.stringify(relayConfig, null, 2))
  await chmod(configDir, 0o755)
  progress(`starting the relay variant: ${relayName}, volume ${volumes[1]} on /data`)
  const t0 = Date.now()
  await must('podman', [...runtime, 'run', ...ulimits, '--detach', '--name', relayName, '--publish', '127.0.0.1::8080',
    '--volume', `${volumes[1]}:/data`, '--volume', `${configDir}:/config-relay:ro`,
    '--env', `RELAY_BROKER_PASSWORD=${randomBytes(18).toString('base64url')}`, '--env', 'HEALTHCHECK_URL=http://127.0.0.1:8080/healthz',
    image, 'node', 'dist/cloud-relay.js', '--config', '/config-relay/relay.json'], 'starting the relay container')
  const port = await publishedPort(relayName, 8080)
  const upS = await waitForAnswer(`http://127.0.0.1:${port}/healthz`, relayName, 90)
  const logs = upS === undefined ? (await run('podman', ['logs', relayName])) : undefined
  if (!check(upS !== undefined, 'the relay variant starts and answers', upS === undefined ? `no answer in 90 s; log:\n${logs?.stdout}${logs?.stderr}` : `after ${((Date.now() - t0) / 1000).toFixed(1)} s from podman run`)) return
  const healthz = await get(`http://127.0.0.1:${port}/healthz`)
  check(healthz.status === 200, 'the relay\'s /healthz is 200', `HTTP ${healthz.status} ${healthz.body.slice(0, 80)}`)
  const health = await run('podman', ['healthcheck', 'run', relayName])
  check(health.code === 0, 'the HEALTHCHECK passes for the relay (HEALTHCHECK_URL)', (health.stdout + health.stderr).trim() || 'healthy')
  const uid = await exec(relayName, ['id', '-u'])
  check(uid === '10001', 'the relay runs as the image\'s user pbx, not root', `uid ${uid}`)
}

async function testNoCaInImage(): Promise<void> {
  const hostBundle = await hostCaBundle()
  if (!hostBundle) {
    check(true, 'no host CA bundle to look for in the image')
    return
  }
  const root = (await must('podman', ['image', 'mount', image], 'mounting the image to look inside')).trim()
  try {
    const imageBundle = await readFile(join(root, 'etc/ssl/certs/ca-certificates.crt'), 'utf8')
    const extra = await hostOnlyCertificateLines(hostBundle, imageBundle)
    if (extra.length === 0) {
      check(true, 'the host\'s CA bundle adds nothing to Debian\'s: no local CA to look for in the image')
      return
    }
    const patterns = extra.flatMap((e) => ['-e', e])
    // The control: the same search finds them in the host's bundle, so a leaked copy would be found too.
    const control = await run('grep', ['-cF', ...patterns, hostBundle])
    if (!check(Number(control.stdout.trim()) >= extra.length, 'the search finds the host\'s local CAs in the host\'s bundle (control)', `${control.stdout.trim()} of ${extra.length}`)) return
    const found = await run('grep', ['-rlF', '--binary-files=text', ...patterns, root])
    const hits = found.stdout.trim().split('\n').filter((l) => l.length > 0).map((l) => l.slice(root.length))
    check(hits.length === 0 && found.code === 1, 'the host\'s local CAs (the build secret) are nowhere in the image', hits.length ? hits.join(', ') : `${extra.length} local CA(s) looked for in ${hostBundle}`)
  } finally {
    await run('podman', ['image', 'unmount', image])
  }
}

const t0 = Date.now()
try {
  if (!values['no-build']) {
    const cafile = await hostCaBundle()
    const figures = await buildImage({ tag: image, base: DEFAULT_BASE, rebuildBase: false, cafile, layers: true })
    process.stdout.write(`build time: ${figures.buildSeconds.toFixed(1)} s${figures.baseSeconds === undefined ? '' : ` (+ ${figures.baseSeconds.toFixed(1)} s for the Debian base)`}\n`)
  } else if (!(await imageExists(image))) {
    throw new Error(`image ${image} does not exist: run npm run container:build first, or leave --no-build out`)
  }
  const size = Number((await must('podman', ['image', 'inspect', '--format', '{{.Size}}', image], 'reading the image size')).trim())
  process.stdout.write(`image size: ${(size / 1e6).toFixed(1)} MB (${image})\n`)
  await testGateway()
  await testRelay()
  await testNoCaInImage()
} catch (err) {
  check(false, 'container test', (err as Error).message)
} finally {
  await cleanUp()
}
process.stdout.write(`container:test: ${passed} passed, ${failed} failed in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
process.exit(failed === 0 ? 0 : 1)
