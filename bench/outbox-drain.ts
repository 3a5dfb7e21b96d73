/**
 * Outbox drain benchmark: a box-side uplink and outbox queue transitions while the broker (aedes over TLS with
 * client certificates, reached through a TCP fault proxy) is cut off; then the link is restored and we measure
 * from the reconnect until every record is acknowledged. Prints reconnect-to-drained time (target ≤ 10 s),
 * records/s, the outbox's bytes on disk before and after compaction, and fsyncs.
 *
 *   npm run bench:outbox -- [--transitions 10000] [--endpoints 10000] [--coalesced-endpoints 1000]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { topics } from '../gateway/protocol/topics.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { MqttUplink } from '../gateway/src/mqtt/uplink.js'
import { OutboxStore, outboxFileBytes, outboxKeys } from '../gateway/src/outbox/outbox-store.js'
import { FaultProxy } from '../test/helpers/fault-proxy.js'
import { makePki, TlsBroker } from '../test/uplink/fixtures/tls-broker.js'

const { values } = parseArgs({
  options: {
    transitions: { type: 'string', default: '10000' },
    endpoints: { type: 'string', default: '10000' },
    'coalesced-endpoints': { type: 'string', default: '1000' },
  },
})
const TRANSITIONS = Number(values.transitions)
const GW = 'gw-bench'
const STATES = ['ringing', 'busy', 'held', 'idle'] as const

const pki = await makePki('Bench relay CA')
const broker = await TlsBroker.start(pki)
const proxy = await FaultProxy.start({ port: broker.mqttsPort })
const cert = await pki.issueClientCertificate(GW)
const root = await mkdtemp(join(tmpdir(), 'outbox-bench-'))

interface RunResult {
  label: string
  endpoints: number
  transitions: number
  records: number
  putMs: number
  fsyncsForPuts: number
  bytesQueued: number
  liveBytes: number
  restoreToConnectMs: number
  reconnectToDrainedMs: number
  bytesDrained: number
  bytesCompacted: number
  fsyncsTotal: number
}

async function run(label: string, endpoints: number): Promise<RunResult> {
  const dir = join(root, label.replace(/\W+/g, '-'))
  const counters = new Counters()
  const logger = pino({ level: 'fatal' }) // the cut makes the uplink log errors by design
  const outbox = new OutboxStore({ dir }, { logger, clock: systemClock, counters })
  await outbox.open()
  let seq = 0
  const uplink = new MqttUplink({
    urls: [`mqtts://127.0.0.1:${proxy.port}`],
    gatewayId: GW,
    tls: { keyPem: cert.keyPem, certPem: cert.certPem, caPem: pki.caCertPem },
    version: 'bench',
    startedAt: Date.now(),
    reconnectMinMs: 100,
    reconnectMaxMs: 200,
    connectTimeoutMs: 2000,
  }, { logger, clock: systemClock, counters, nextSeq: () => ++seq, outbox })
  let connectedAt = 0
  uplink.onConnect(() => (connectedAt = performance.now()))
  const drained = new Promise<void>((resolve) => uplink.onDrained(() => resolve()))

  proxy.cut()
  uplink.start()
  const putStart = performance.now()
  const puts: Array<Promise<boolean>> = []
  for (let i = 0; i < TRANSITIONS; i++) {
    const endpointId = String(100_000 + (i % endpoints))
    const state = STATES[Math.floor(i / endpoints) % STATES.length] ?? 'busy'
    const data = { connectorId: 'pbx1', endpointId, state, calls: state === 'idle' ? 0 : 1, dnd: false, dndOwner: null, changedAt: Date.now(), cause: `call.${state}` }
    puts.push(uplink.publishDurable(outboxKeys.endpoint('pbx1', endpointId), 'endpoint', data, topics.endpoint(GW)))
  }
  const stored = await Promise.all(puts)
  if (stored.some((ok) => !ok)) throw new Error('a put failed')
  const putMs = performance.now() - putStart
  const fsyncsForPuts = outbox.stats().fsyncs
  const records = outbox.size
  const bytesQueued = await outboxFileBytes(dir)
  const liveBytes = outbox.stats().liveBytes
  const received = broker.endpointMessages().length

  const restoredAt = performance.now()
  proxy.restore()
  await drained
  const drainedAt = performance.now()
  await outbox.flush()
  const bytesDrained = await outboxFileBytes(dir)
  await outbox.compact()
  const bytesCompacted = await outboxFileBytes(dir)
  const arrived = broker.endpointMessages().length - received
  if (arrived < records) throw new Error(`only ${arrived} of ${records} records reached the broker`)
  await uplink.stop()
  await outbox.close()
  return {
    label, endpoints, transitions: TRANSITIONS, records, putMs, fsyncsForPuts, bytesQueued, liveBytes,
    restoreToConnectMs: connectedAt - restoredAt, reconnectToDrainedMs: drainedAt - connectedAt, bytesDrained, bytesCompacted,
    fsyncsTotal: outbox.stats().fsyncs,
  }
}

const results = [
  await run(`${TRANSITIONS} transitions on ${values.endpoints} endpoints`, Number(values.endpoints)),
  await run(`${TRANSITIONS} transitions on ${values['coalesced-endpoints']} endpoints (coalesced)`, Number(values['coalesced-endpoints'])),
]
await proxy.close()
await broker.close()
await rm(root, { recursive: true, force: true })

const kib = (bytes: number) => (bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`)
for (const r of results) {
  console.log(`\n${r.label}`)
  console.log(`  queued while cut off:     ${r.records} records in the outbox (${r.transitions} puts in ${r.putMs.toFixed(0)} ms, ${r.fsyncsForPuts} fsyncs)`)
  console.log(`  outbox on disk:           ${kib(r.bytesQueued)} written while cut off (${kib(r.liveBytes)} live), ${kib(r.bytesDrained)} after draining, ${kib(r.bytesCompacted)} after compaction`)
  console.log(`  restore → connected:      ${r.restoreToConnectMs.toFixed(0)} ms (reconnect backoff)`)
  console.log(`  reconnect → drained:      ${r.reconnectToDrainedMs.toFixed(0)} ms (target ≤ 10,000 ms) ${r.reconnectToDrainedMs <= 10_000 ? 'OK' : 'TOO SLOW'}`)
  console.log(`  throughput:               ${Math.round(r.records / (r.reconnectToDrainedMs / 1000))} records/s acknowledged`)
  console.log(`  fsyncs in all:            ${r.fsyncsTotal}`)
}
