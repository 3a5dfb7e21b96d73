/**
 * The shared service runner (both services' main) catches what a bug leaves unhandled: an unhandled promise
 * rejection is logged with its error and the service keeps serving; an uncaught exception is logged, the service
 * is stopped within its deadline, and the process exits non-zero so systemd restarts it. Never silently.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { eventually } from '../helpers/eventually.js'
import type { TapTest } from '../helpers/tap-types.js'

async function startFaultyService(t: TapTest) {
  const dir = await mkdtemp(join(tmpdir(), 'faulty-'))
  const portFile = join(dir, 'port')
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/console/fixtures/faulty-service.ts', '--config', portFile], { env: { ...process.env, LOG_PRETTY: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const chunks: string[] = []
  child.stdout.on('data', (c: Buffer) => chunks.push(c.toString()))
  child.stderr.on('data', (c: Buffer) => chunks.push(c.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  })
  const port = await eventually(async () => Number(await readFile(portFile, 'utf8').catch(() => '')) || undefined, 'the service to listen', 30_000)
  const base = `http://127.0.0.1:${port}`
  const output = () => chunks.join('')
  const lines = () => output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; err?: { message: string } })
  return { child, base, output, lines, exited }
}

t.test('an unhandled rejection is logged with its error and the service keeps serving', async (t) => {
  const s = await startFaultyService(t)
  await fetch(`${s.base}/reject`)
  const line = await eventually(() => s.lines().find((l) => l.level >= 50 && /unhandled promise rejection/.test(l.msg)), 'the rejection in the log', 10_000).catch(() => undefined)
  t.ok(line, `logged as an error (output: ${s.output().slice(0, 400)})`)
  t.equal(line?.err?.message, 'a rejected promise nobody awaited', 'with the error')
  t.match(line?.msg, /keeps serving|kept serving/, 'and a word on what happened')
  t.equal((await fetch(`${s.base}/healthz`).catch(() => undefined))?.status, 200, 'the service still answers')
  t.equal(s.child.exitCode, null, 'the process is still running')
})

t.test('an uncaught exception is logged, the service stops, and the process exits non-zero', async (t) => {
  const s = await startFaultyService(t)
  await fetch(`${s.base}/throw`)
  const code = await s.exited
  t.equal(code, 1, 'exit code 1: systemd restarts it')
  const line = s.lines().find((l) => l.level >= 50 && /uncaught exception/.test(l.msg))
  t.ok(line, `logged (output: ${s.output().slice(0, 400)})`)
  t.equal(line?.err?.message, 'a throw outside any request', 'with the error')
  t.match(line?.msg, /stopping|exit/, 'and a word on what happens next')
  t.ok(s.lines().some((l) => l.msg === 'service stopped'), 'the service was stopped before the exit')
})
