import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { OutboxStore } from '../../gateway/src/outbox/outbox-store.js'
import { captureLogger } from '../helpers/capture-logger.js'

const child = fileURLToPath(new URL('./fixtures/put-loop.ts', import.meta.url))
const work = await mkdtemp(join(tmpdir(), 'outbox-kill-'))
const dir = join(work, 'outbox')
const confirmations = join(work, 'confirmed.txt')
t.teardown(() => rm(work, { recursive: true, force: true }))

/** Runs the put loop, SIGKILLs it `afterMs` after it is ready, returns the puts it reported as resolved. */
async function runAndKill(afterMs: number): Promise<{ latest: Map<string, number>; puts: number }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', child, dir, confirmations], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
  proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
  const exited = new Promise<NodeJS.Signals | null>((resolve) => proc.on('exit', (_code, signal) => resolve(signal)))
  const ready = await new Promise<boolean>((resolve) => {
    const check = () => {
      if (out.startsWith('ready\n')) resolve(true)
    }
    proc.stdout.on('data', check)
    void exited.then(() => resolve(false))
  })
  if (!ready) throw new Error(`put loop did not start: ${err}`)
  await new Promise((resolve) => setTimeout(resolve, afterMs))
  proc.kill('SIGKILL')
  const signal = await exited
  if (signal !== 'SIGKILL') throw new Error(`put loop ended by itself (${signal}): ${err}`)
  if (err.includes('put failed')) throw new Error(err)
  const latest = new Map<string, number>()
  // Only whole lines: the kill may cut the last one.
  const lines = (await readFile(confirmations, 'utf8')).split('\n').slice(0, -1)
  for (const line of lines) {
    const [key, seq] = line.split(' ')
    if (key && seq) latest.set(key, Math.max(latest.get(key) ?? 0, Number(seq)))
  }
  return { latest, puts: lines.length }
}

const ROUNDS = 6
t.test(`kill -9 of a process putting records, ${ROUNDS} rounds on the same outbox`, async (t) => {
let totalConfirmed = 0
for (let round = 1; round <= ROUNDS; round++) {
  const afterMs = 80 + Math.floor(Math.random() * 500)
  const { latest: confirmed, puts } = await runAndKill(afterMs)
  totalConfirmed += confirmed.size
  const { logger, lines } = captureLogger('info')
  const counters = new Counters()
  const store = new OutboxStore({ dir }, { logger, clock: systemClock, counters })
  await store.open()
  let missing = 0
  let corrupt = 0
  for (const [key, seq] of confirmed) {
    const record = store.latest(key)
    if (!record || record.seq < seq) missing += 1
  }
  for (const record of store.pending()) {
    const body = JSON.parse(record.payload.toString()) as { seq: number }
    if (body.seq !== record.seq || record.topic !== 'pbxgw/v1/gw/evt/endpoint') corrupt += 1
  }
  t.ok(confirmed.size > 0, `round ${round} (killed after ${afterMs} ms): ${puts} confirmed puts on ${confirmed.size} keys`)
  t.equal(missing, 0, `round ${round}: every confirmed put is there with its latest value (or a newer one)`)
  t.equal(corrupt, 0, `round ${round}: no record is corrupt`)
  const torn = lines().find((l) => /torn or corrupt record/.test(l.msg))
  t.comment(`round ${round}: ${store.size} records, ${store.stats().fileBytes} bytes${torn ? `, torn tail of ${String(torn.droppedBytes)} bytes cut off` : ''}`)
  await store.close()
}
t.ok(totalConfirmed > 0)
})
