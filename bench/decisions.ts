/**
 * Sync engine throughput: decisions per second and decision latency for many people on one relay process, with
 * a realistic event mix. The engine runs for real (decide + reconcile, event log, ownership); Graph is the
 * simulator's presence rules in process and gateways answer commands at once, so the figure is the engine's
 * own cost. `--store pglite` puts the relay's SQL store under it, as the relay runs it (write-behind batches).
 *
 *   npm run bench:decisions -- --people 50000 --events 200000
 *
 * Target (issue 3): >= 5,000 decisions/s for 50,000 people.
 */
import { parseArgs } from 'node:util'
import pino from 'pino'
import { InProcessGraph } from '../cloud-relay/graph-sim/in-process-graph.js'
import { PresenceStore } from '../cloud-relay/graph-sim/presence-store.js'
import type { GraphUser } from '../cloud-relay/src/graph/types.js'
import { MemorySyncStore } from '../cloud-relay/src/store/memory-sync-store.js'
import { migrate } from '../cloud-relay/src/store/migrate.js'
import { RelayStore } from '../cloud-relay/src/store/relay-store.js'
import { WriteBehindSyncStore } from '../cloud-relay/src/store/write-behind-store.js'
import { openSqlClient } from '../cloud-relay/src/store/sql-client.js'
import { DEFAULT_SYNC_SETTINGS } from '../cloud-relay/src/sync/mapping.js'
import { DEFAULT_SYNC_TIMINGS, SyncEngine } from '../cloud-relay/src/sync/sync-engine.js'
import type { SyncStore } from '../cloud-relay/src/sync/sync-store.js'
import type { EndpointData } from '../gateway/protocol/schemas.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'

const { values } = parseArgs({
  options: {
    people: { type: 'string', default: '50000' },
    events: { type: 'string', default: '200000' },
    gateways: { type: 'string', default: '20' },
    store: { type: 'string', default: 'memory' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write('npm run bench:decisions -- [--people N] [--events N] [--gateways N] [--store memory|pglite]\n')
  process.exit(0)
}
const peopleCount = Number(values.people)
const eventCount = Number(values.events)
const gatewayCount = Number(values.gateways)
const log = (line: string) => process.stdout.write(`${line}\n`)

const logger = pino({ level: 'silent' })
let store: SyncStore & { addGateway?: (id: string, tenant: string) => void }
let close = async () => {}
if (values.store === 'pglite') {
  const db = await openSqlClient({ dataDir: 'memory' }, logger)
  await migrate(db, logger)
  const relayStore = new RelayStore(db)
  await relayStore.upsertTenant('t1', 'T1')
  for (let g = 0; g < gatewayCount; g++) await relayStore.upsertGateway({ id: `gw${g}`, tenantId: 't1', name: '', secretHash: null })
  const writeBehind = new WriteBehindSyncStore(relayStore, { flushMs: 20 }, logger)
  store = writeBehind
  close = async () => {
    await writeBehind.flush()
    await db.close()
  }
} else {
  const memory = new MemorySyncStore()
  memory.maxEvents = 100_000
  for (let g = 0; g < gatewayCount; g++) memory.addGateway(`gw${g}`, 't1')
  store = memory
}

const presence = new PresenceStore(() => Date.now(), () => undefined)
const users = new Map<string, GraphUser>()
for (let i = 0; i < peopleCount; i++) {
  const email = `p${i}@t1.example`
  users.set(email, { id: `u${i}`, displayName: `Person ${i}`, mail: email, userPrincipalName: email })
}
const graph = new InProcessGraph(presence, users, 'bench-app')
const latencies: number[] = []
let decisions = 0
const engine = new SyncEngine({
  store,
  logger,
  clock: systemClock,
  counters: new Counters(),
  settings: DEFAULT_SYNC_SETTINGS,
  timings: DEFAULT_SYNC_TIMINGS,
  graphFor: () => graph,
  tenantOf: () => 't1',
  // Gateways confirm at once; the engine's own bookkeeping is what is measured.
  sendSetDnd: async (_gatewayId, data) => ({ correlationId: 'x', command: 'cmd.setDnd', ok: true, endpoint: undefined as unknown as EndpointData }),
  observeReconcile: (ms) => {
    decisions++
    if (measuring) latencies.push(ms)
  },
})
let measuring = false

log(`setting up ${peopleCount} people on ${gatewayCount} gateways (store: ${values.store})...`)
let t0 = performance.now()
await engine.load()
engine.start()
const perGateway = Math.ceil(peopleCount / gatewayCount)
for (let g = 0; g < gatewayCount; g++) {
  const entries = []
  for (let i = g * perGateway; i < Math.min(peopleCount, (g + 1) * perGateway); i++) entries.push({ endpointId: String(10000 + i), name: `Person ${i}`, email: `p${i}@t1.example` })
  await engine.onDirectory(`gw${g}`, { connectorId: 'pbx', entries })
}
await engine.idle()
log(`setup: ${((performance.now() - t0) / 1000).toFixed(1)} s, ${decisions} initial decisions`)

// Event mix: 55% PBX call transitions, 30% Teams presence changes, 10% Teams activity ending, 5% manual DND.
const seqs = new Map<string, number>()
const callState = new Map<number, 'idle' | 'ringing' | 'busy'>()
let rng = 42
const random = () => {
  rng = (rng * 1103515245 + 12345) % 2147483648
  return rng / 2147483648
}
const TEAMS = [['Busy', 'InACall'], ['Busy', 'InAConferenceCall'], ['DoNotDisturb', 'Presenting'], ['Busy', 'InAMeeting'], ['Available', 'Available'], ['Away', 'Away']] as const

decisions = 0
measuring = true
t0 = performance.now()
// Events arrive in bursts of 200 (several gateways publishing at once); latency includes queueing in a burst.
const batch = 200
for (let done = 0; done < eventCount; done += batch) {
  const work: Array<Promise<void>> = []
  for (let k = 0; k < batch; k++) {
    const i = Math.floor(random() * peopleCount)
    const gatewayId = `gw${Math.floor(i / perGateway)}`
    const endpointId = String(10000 + i)
    const r = random()
    if (r < 0.55) {
      const state = callState.get(i) ?? 'idle'
      const next = state === 'idle' ? 'ringing' : state === 'ringing' ? 'busy' : 'idle'
      callState.set(i, next)
      const seq = (seqs.get(gatewayId) ?? 0) + 1
      seqs.set(gatewayId, seq)
      work.push(engine.onEndpoint(gatewayId, { connectorId: 'pbx', endpointId, state: next, calls: next === 'idle' ? 0 : 1, dnd: false, dndOwner: null, changedAt: Date.now(), cause: `call.${next}` }, seq))
    } else if (r < 0.95) {
      const [availability, activity] = r < 0.85 ? TEAMS[Math.floor(random() * TEAMS.length)]! : ['Available', 'Available']
      work.push(engine.onTeamsPresence('t1', [{ userId: `u${i}`, availability, activity }]))
    } else {
      const seq = (seqs.get(gatewayId) ?? 0) + 1
      seqs.set(gatewayId, seq)
      const on = random() < 0.5
      work.push(engine.onEndpoint(gatewayId, { connectorId: 'pbx', endpointId, state: callState.get(i) ?? 'idle', calls: 0, dnd: on, dndOwner: on ? 'user' : null, changedAt: Date.now(), cause: 'dnd.user' }, seq))
    }
  }
  await Promise.all(work)
  await engine.idle()
}
const seconds = (performance.now() - t0) / 1000
measuring = false
latencies.sort((a, b) => a - b)
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN
log(`events      ${eventCount} in ${seconds.toFixed(1)} s (${Math.round(eventCount / seconds)} events/s)`)
log(`decisions   ${decisions} in ${seconds.toFixed(1)} s: ${Math.round(decisions / seconds)} decisions/s`)
log(`latency     per decision (decide + reconcile, incl. store and Graph calls): p50=${q(0.5).toFixed(3)} ms  p99=${q(0.99).toFixed(3)} ms  max=${q(1).toFixed(1)} ms`)
log(`graph       ${graph.writes} writes`)
log(`memory      rss ${(process.memoryUsage().rss / 1024 / 1024).toFixed(0)} MiB, heap ${(process.memoryUsage().heapUsed / 1024 / 1024).toFixed(0)} MiB`)
engine.stop()
await close()
process.exit(0)
