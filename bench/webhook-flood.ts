/**
 * Floods the relay's Graph webhook the way an attacker on the internet could, while Graph (the simulator) keeps
 * delivering genuine notifications: oversized bodies (16 MiB of `{"value":[0,0,…]}`), bodies just under the 1 MiB
 * limit packed with half a million values, 1,000-item batches naming subscriptions the relay does not hold, and
 * 600-item genuine batches. Meanwhile /healthz is sampled and the event loop delay measured. The relay, the
 * simulator and the /healthz sampler share one process, as in the tests (test/notify/fixtures/notify-harness.ts);
 * the attacker's requests come from a worker thread.
 *
 *   npx tsx bench/webhook-flood.ts [--parallel 3] [--rounds 5] [--valid-items 600] [--kinds oversized16MiB,packedUnder1MiB,unknownSubscriptions,genuine]
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { Writable } from 'node:stream'
import { availableParallelism, loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import Fastify from 'fastify'
import pino from 'pino'
import { Counters } from '#kernel/counters.js'
import { MAX_NOTIFICATIONS_PER_POST, registerWebhookRoutes, WEBHOOK_BODY_LIMIT, WebhookQueue } from '../cloud-relay/src/notifications/webhook-routes.js'
import { eventually } from '../test/helpers/eventually.js'
import { startNotifyHarness, TENANT } from '../test/notify/fixtures/notify-harness.js'

const { values } = parseArgs({
  options: {
    parallel: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '5' },
    'valid-items': { type: 'string', default: '600' },
    kinds: { type: 'string', default: 'oversized16MiB,packedUnder1MiB,unknownSubscriptions,genuine' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write('npx tsx bench/webhook-flood.ts [--parallel N] [--rounds N] [--valid-items N] [--kinds a,b,…]\n')
  process.exit(0)
}
const parallel = Number(values.parallel)
const rounds = Number(values.rounds)
const validItems = Number(values['valid-items'])
const kinds = new Set(values.kinds.split(','))

// The relay logs at info, as in production; the lines are counted, not kept.
let logLines = 0
let logBytes = 0
const sink = new Writable({
  write(chunk: Buffer, _encoding, callback) {
    logBytes += chunk.length
    for (const byte of chunk) if (byte === 0x0a) logLines++
    callback()
  },
})
const h = await startNotifyHarness({ people: 10, pollIntervalMs: 60_000, logger: pino({ level: 'info' }, sink) })
await h.startRelay()
await h.signIn(h.sync[0]!)
await eventually(() => h.sim.getSubscriptions().length === 1, 'a subscription', 30_000)
await eventually(() => h.relay.observation.manager(TENANT)?.subscribedPeople().size === 10, 'people subscribed', 30_000)
const person = h.users[0]!
h.sim.teams(person.id).startCall()
await eventually(() => h.lastNotification() !== undefined, 'a genuine notification (for its validation tokens)')
await h.relay.observation.idle()

const base = `http://127.0.0.1:${h.relay.httpPort}`
const sub = h.sim.getSubscriptions()[0]!
const zeros = (bytes: number) => `{"value":[${Array(Math.floor((bytes - 12) / 2)).fill('0').join(',')}]}`
const strangers = JSON.stringify({
  value: Array.from({ length: MAX_NOTIFICATIONS_PER_POST }, (_, i) => ({
    subscriptionId: `0f0f0f0f-0000-4000-8000-${String(i).padStart(12, '0')}`,
    clientState: 'guessed',
    resource: `communications/presences/${'x'.repeat(900)}`,
  })),
})
const validBody = () => JSON.stringify({
  value: Array.from({ length: validItems }, () => h.sim.changeNotification(sub.id, person.id, { availability: 'Busy', activity: 'InACall' })),
  validationTokens: h.lastNotification()?.validationTokens,
})
const bodies = Object.entries({
  oversized16MiB: () => zeros(16 * 1024 * 1024),
  packedUnder1MiB: () => zeros(WEBHOOK_BODY_LIMIT - 16),
  unknownSubscriptions: () => strangers,
}).filter(([what]) => kinds.has(what)).map(([what, make]) => [what, Buffer.from(make())] as const)
const valid = kinds.has('genuine') ? Array.from({ length: rounds }, () => Buffer.from(validBody())) : []

/**
 * The senders run in a worker thread: building and copying 16 MiB request bodies is the attacker's cost, and on
 * the main thread it would show up in the event loop delay measured for the relay.
 */
const SENDER = `
const { parentPort, workerData } = require('node:worker_threads')
const { url, rounds, parallel, bodies, valid } = workerData
const statuses = {}
const count = (what, status) => { statuses[what] ??= {}; statuses[what][status] = (statuses[what][status] ?? 0) + 1 }
const send = async (what, body) => {
  try {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    await res.arrayBuffer()
    count(what, res.status)
  } catch {
    count(what, 0) // the relay may close the connection on an oversized body before it is all sent
  }
}
;(async () => {
  for (let round = 0; round < rounds; round++) {
    const sends = []
    for (let i = 0; i < parallel; i++) for (const [what, body] of bodies) sends.push(send(what, body))
    if (valid[round] !== undefined) sends.push(send('genuine', valid[round]))
    await Promise.all(sends)
    parentPort.postMessage({ round })
  }
  parentPort.postMessage({ statuses })
})()
`

async function flood(onRound: () => void): Promise<Record<string, Record<string, number>>> {
  const worker = new Worker(SENDER, { eval: true, workerData: { url: `${base}/graph/notifications`, rounds, parallel, bodies, valid } })
  try {
    return await new Promise((resolve, reject) => {
      worker.on('message', (m: { round?: number; statuses?: Record<string, Record<string, number>> }) => {
        if (m.statuses !== undefined) resolve(m.statuses)
        else onRound()
      })
      worker.on('error', reject)
    })
  } finally {
    await worker.terminate()
  }
}

/** Samples /healthz every 10 ms and the event loop delay while `during` runs. */
async function sample<T>(during: () => Promise<T>): Promise<{ result: T; health: number[]; lag: ReturnType<typeof monitorEventLoopDelay>; seconds: number }> {
  const lag = monitorEventLoopDelay({ resolution: 1 })
  lag.enable()
  const health: number[] = []
  let running = true
  const sampler = (async () => {
    while (running) {
      const started = performance.now()
      const res = await fetch(`${base}/healthz`)
      await res.arrayBuffer()
      health.push(performance.now() - started)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()
  const started = performance.now()
  const result = await during()
  const seconds = (performance.now() - started) / 1000
  running = false
  await sampler
  lag.disable()
  health.sort((a, b) => a - b)
  return { result, health, lag, seconds }
}

// The same sampling with nothing else going on: on a shared machine, the delays the flood adds are the difference.
const idle = await sample(() => new Promise((resolve) => setTimeout(resolve, 3000)))

const rssBefore = process.memoryUsage().rss
const linesBefore = logLines
const bytesBefore = logBytes
const acceptedBefore = h.counters.get('notify.accepted')
let peakRss = rssBefore
const run = await sample(async () => {
  const statuses = await flood(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss)
  })
  await h.relay.observation.idle()
  return statuses
})
const rssAfter = process.memoryUsage().rss
const acceptedInFlood = h.counters.get('notify.accepted') - acceptedBefore
const logLinesInFlood = logLines - linesBefore
const logKiBInFlood = Math.round((logBytes - bytesBefore) / 1024)

/**
 * The webhook's synchronous work per request (parse, value budget, screening; the answer), without the socket:
 * the relay's own routes and inbox on a fastify instance of their own, driven by inject(). The least of a few
 * runs, as process CPU time, so the other work on a shared machine does not count.
 */
async function cpuPerRequest(): Promise<Array<[string, number, number]>> {
  const inbox = h.relay.observation.inbox
  if (inbox === undefined) return []
  const quiet = pino({ level: 'silent' })
  const standalone = Fastify()
  registerWebhookRoutes(standalone, { queue: new WebhookQueue(inbox, { logger: quiet, counters: new Counters() }), inbox, logger: quiet })
  await standalone.ready()
  const rows: Array<[string, number, number]> = []
  for (const [what, body] of [...bodies, ...(valid[0] ? [['genuine', valid[0]] as const] : [])]) {
    let best = Infinity
    let status = 0
    for (let i = 0; i < 5; i++) {
      const before = process.cpuUsage()
      const res = await standalone.inject({ method: 'POST', url: '/graph/notifications', headers: { 'content-type': 'application/json' }, payload: body })
      const used = process.cpuUsage(before)
      best = Math.min(best, (used.user + used.system) / 1000)
      status = res.statusCode
    }
    rows.push([what, status, best])
  }
  await h.relay.observation.idle()
  await standalone.close()
  return rows
}
const cpu = await cpuPerRequest()

const ms = (n: number) => `${n.toFixed(1)} ms`
const healthLine = (h: number[]) => {
  const pct = (p: number) => h[Math.min(h.length - 1, Math.floor((p / 100) * h.length))] ?? NaN
  return `${String(h.length).padStart(4)} samples: p50 ${ms(pct(50))}, p99 ${ms(pct(99))}, max ${ms(h[h.length - 1] ?? NaN)}`
}
const lagLine = (l: ReturnType<typeof monitorEventLoopDelay>) => `p50 ${ms(l.percentile(50) / 1e6)}, p99 ${ms(l.percentile(99) / 1e6)}, max ${ms(l.max / 1e6)}`
const mb = (n: number) => `${Math.round(n / 1024 / 1024)} MB`
const lines = [
  `flood                    ${rounds} rounds of ${bodies.map(([what]) => `${parallel} × ${what}`).join(', ')}${valid.length ? `, 1 × ${validItems} genuine items` : ''} in ${run.seconds.toFixed(1)} s`,
  ...Object.entries(run.result).map(([what, m]) => `  ${what.padEnd(22)} ${Object.entries(m).map(([s, n]) => `${n} × ${s === '0' ? 'connection closed' : s}`).join(', ')}`),
  `genuine items accepted   ${acceptedInFlood} of ${valid.length * validItems}`,
  `/healthz idle            ${healthLine(idle.health)}`,
  `/healthz during flood    ${healthLine(run.health)}`,
  `event loop delay idle    ${lagLine(idle.lag)}`,
  `event loop delay flood   ${lagLine(run.lag)}`,
  ...cpu.map(([what, status, best]) => `CPU per request          ${what.padEnd(22)} ${status} in ${ms(best)} (least of 5, before the answer)`),
  `RSS                      before ${mb(rssBefore)}, peak ${mb(peakRss)}, after ${mb(rssAfter)}`,
  `log written              ${logLinesInFlood} lines, ${logKiBInFlood} KiB`,
  `machine load (1 min)     ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} cores`,
]
process.stdout.write(`${lines.join('\n')}\n`)
await h.close()
process.exit(0)
