/**
 * Latency from the PBX simulator emitting a call event to the Graph simulator receiving the matching
 * setPresence / clearPresence, through the real gateway, broker, relay, store and Graph SDK; and beside it the
 * floor: a bare MQTT QoS 1 publish → receive on the same broker.
 *
 *   npm run bench:latency -- --rate 100 --duration 20 --people 200
 *
 * A transition is one answered or one ended call. Target (issue 2): p99 <= 100 ms at 100 transitions/s.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import mqtt from 'mqtt'
import pino from 'pino'
import { Stack, type DemoPerson } from '../scripts/stack.js'

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '100' },
    duration: { type: 'string', default: '20' },
    people: { type: 'string', default: '200' },
    warmup: { type: 'string', default: '3' },
    store: { type: 'string', default: 'pglite' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write('npm run bench:latency -- [--rate N/s] [--duration S] [--people N] [--warmup S] [--store pglite|postgres]\n  --store postgres uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test)\n')
  process.exit(0)
}
const rate = Number(values.rate)
const durationS = Number(values.duration)
const peopleCount = Number(values.people)
const warmupS = Number(values.warmup)
const log = (line: string) => process.stdout.write(`${line}\n`)

function percentiles(samples: number[]): { n: number; p50: number; p95: number; p99: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted.at(-1) ?? NaN }
}
const fmt = (p: ReturnType<typeof percentiles>) => `n=${p.n}  p50=${p.p50.toFixed(1)} ms  p95=${p.p95.toFixed(1)} ms  p99=${p.p99.toFixed(1)} ms  max=${p.max.toFixed(1)} ms`

const people: DemoPerson[] = Array.from({ length: peopleCount }, (_, i) => ({
  extension: String(1000 + i),
  name: `Person ${i}`,
  email: `person${i}@contoso.example`,
}))
const dataDir = await mkdtemp(join(tmpdir(), 'bench-'))
const databaseUrl = values.store === 'postgres' ? (process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test') : undefined
const stack = new Stack({ dataDir, logger: pino({ level: 'silent' }), people, databaseUrl, sync: { pollIntervalMs: 5000 } })
log(`starting the stack with ${peopleCount} people (store ${values.store})...`)
await stack.start()
const waitFor = async (check: () => boolean, what: string) => {
  const deadline = Date.now() + 60_000
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
await waitFor(() => stack.relay!.engine.graphUserIds('contoso').length === peopleCount, 'people to be mapped')
await waitFor(() => stack.pbx.monitorCount >= peopleCount, 'monitors')

// ---- floor: bare MQTT QoS 1 on the same broker -------------------------------------------------------------
{
  const sub = await mqtt.connectAsync(stack.brokerUrl, { clientId: 'bench-sub', username: 'relay', password: stack.relayPassword })
  const pub = await mqtt.connectAsync(stack.brokerUrl, { clientId: 'bench-pub', username: 'relay', password: stack.relayPassword })
  await sub.subscribeAsync('bench/floor', { qos: 1 })
  const sent = new Map<number, number>()
  const samples: number[] = []
  sub.on('message', (_topic, payload) => {
    const i = payload.readUInt32BE(0)
    const t0 = sent.get(i)
    if (t0 !== undefined) samples.push(performance.now() - t0)
  })
  const count = Math.round(rate * Math.min(durationS, 10))
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(300)
    payload.writeUInt32BE(i, 0)
    sent.set(i, performance.now())
    pub.publish('bench/floor', payload, { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 1000 / rate))
  }
  await new Promise((resolve) => setTimeout(resolve, 500))
  log(`floor   bare MQTT QoS 1 publish->receive at ${rate}/s: ${fmt(percentiles(samples))}`)
  await sub.endAsync()
  await pub.endAsync()
}

// ---- end to end ----------------------------------------------------------------------------------------------
const extensionOfUser = new Map(people.map((p) => [stack.graph.findUser(p.email)!.id, p.extension]))
const pendingSet = new Map<string, number>() // extension -> performance.now() of EstablishedEvent
const pendingClear = new Map<string, number>() // extension -> performance.now() of ConnectionClearedEvent
const setSamples: number[] = []
const clearSamples: number[] = []
let measuring = false
stack.pbx.onEventSent((record) => {
  if (!measuring) return
  if (record.type === 'EstablishedEvent') pendingSet.set(record.extension, record.at)
  else if (record.type === 'ConnectionClearedEvent') pendingClear.set(record.extension, record.at)
})
stack.graph.on('setPresence', (event) => {
  const extension = extensionOfUser.get(event.userId)
  const t0 = extension === undefined ? undefined : pendingSet.get(extension)
  if (extension === undefined || t0 === undefined) return
  pendingSet.delete(extension)
  setSamples.push(event.at - t0)
})
stack.graph.on('clearPresence', (event) => {
  const extension = extensionOfUser.get(event.userId)
  const t0 = extension === undefined ? undefined : pendingClear.get(extension)
  if (extension === undefined || t0 === undefined) return
  pendingClear.delete(extension)
  clearSamples.push(event.at - t0)
})

const calls = new Map<string, string>() // extension -> callId in progress
let next = 0
let transitions = 0
const total = Math.round(rate * (warmupS + durationS))
log(`driving ${rate} transitions/s for ${warmupS} s warm-up + ${durationS} s measured...`)
const startedAt = performance.now()
for (let i = 0; i < total; i++) {
  if (i === Math.round(rate * warmupS)) measuring = true
  const person = people[next++ % people.length]!
  const callId = calls.get(person.extension)
  if (callId) {
    stack.pbx.hangup(callId)
    calls.delete(person.extension)
  } else {
    const id = stack.pbx.incomingCall(person.extension)
    stack.pbx.answer(id)
    calls.set(person.extension, id)
  }
  transitions++
  // Pace against the wall clock so timer drift does not lower the rate.
  const due = startedAt + ((i + 1) * 1000) / rate
  const wait = due - performance.now()
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
}
const drivenFor = (performance.now() - startedAt) / 1000
await new Promise((resolve) => setTimeout(resolve, 2000))
measuring = false
const all = [...setSamples, ...clearSamples]
log(`e2e     ${transitions} transitions in ${drivenFor.toFixed(1)} s (${(transitions / drivenFor).toFixed(1)}/s achieved)`)
log(`e2e     call answered -> setPresence:   ${fmt(percentiles(setSamples))}`)
log(`e2e     call ended    -> clearPresence: ${fmt(percentiles(clearSamples))}`)
log(`e2e     all transitions:                ${fmt(percentiles(all))}`)
log(`e2e     unmatched (no Graph write seen within 2 s): ${pendingSet.size + pendingClear.size}`)
log(`memory  rss ${(process.memoryUsage().rss / 1024 / 1024).toFixed(0)} MiB (all services in one process)`)
await stack.stop()
await rm(dataDir, { recursive: true, force: true })
process.exit(0)
