/**
 * Directory ingest benchmark: a real relay (embedded broker, PGlite) receives a large legitimate PBX directory in
 * parts from one gateway, and a 12,000-entry flood in one message from another, while /healthz is polled and the
 * event loop's delay is sampled. Prints the time to apply the directory, entries/s, the largest event-loop delay
 * and the slowest /healthz answer: the figures that say one gateway's directory never stalls the relay.
 *
 *   npm run bench:directory -- [--users 3000] [--memory: PGlite in memory instead of on disk] [--postgres: on PostgreSQL]
 *
 * On PGlite every query runs on the relay's own thread, so its figures are the worst case; on PostgreSQL the
 * relay waits for the database without blocking.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { splitDirectory } from '../gateway/protocol/directory-parts.js'
import type { DirectoryEntry } from '../gateway/protocol/schemas.js'
import { topics } from '../gateway/protocol/topics.js'
import { createPostgresSchema } from '../test/helpers/postgres.js'
import { envelopeOf, startTwoTenantRelay } from '../test/security/fixtures/two-tenant-relay.js'

const { values } = parseArgs({ options: { users: { type: 'string', default: '3000' }, memory: { type: 'boolean', default: false }, postgres: { type: 'boolean', default: false } } })
const USERS = Number(values.users)
const people = (n: number, domain: string): DirectoryEntry[] =>
  Array.from({ length: n }, (_, i) => ({ endpointId: String(10_000 + i), name: `Person Number ${i}`, email: `person.${i}@${domain}` }))

const pg = values.postgres ? await createPostgresSchema() : undefined
const database = pg ? { database: { url: pg.url } } : values.memory ? { database: { pgliteDir: 'memory' } } : {}
const world = await startTwoTenantRelay({ relay: { sync: { maxPeoplePerTenant: Math.max(10_000, USERS) }, ...database } })
const a = await world.connect('gw-a')
const b = await world.connect('gw-b')
const healthz = `http://127.0.0.1:${world.relay.httpPort}/healthz`

let slowestHealthzMs = 0
let healthzAnswers = 0
let polling = true
const poll = (async () => {
  while (polling) {
    const started = performance.now()
    await fetch(healthz).then((r) => r.arrayBuffer())
    slowestHealthzMs = Math.max(slowestHealthzMs, performance.now() - started)
    healthzAnswers++
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
})()

const delay = monitorEventLoopDelay({ resolution: 5 })
delay.enable()
const started = performance.now()
const flood = envelopeOf('gw-b', 'directory', { connectorId: 'pbx1', entries: people(12_000, 'b.example') })
await b.publishAsync(topics.directory('gw-b'), flood, { qos: 1 })
const { parts } = splitDirectory('pbx1', people(USERS, 'a.example'))
for (const part of parts) await a.publishAsync(topics.directory('gw-a'), envelopeOf('gw-a', 'directory', part), { qos: 1 })
for (;;) {
  // A count, not the rows: on PGlite every query runs on this thread, and the bench must not be what stalls it.
  const [row] = await world.relay.store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM endpoints WHERE gateway_id = $1', ['gw-a'])
  if ((row?.n ?? 0) >= USERS) break
  await new Promise((resolve) => setTimeout(resolve, 250))
}
const seconds = (performance.now() - started) / 1000
delay.disable()
polling = false
await poll

console.log(`store: ${pg ? 'PostgreSQL' : values.memory ? 'PGlite in memory' : 'PGlite on disk'}; directory entries per slice: 25`)
console.log(`directory of ${USERS} users in ${parts.length} parts applied in ${seconds.toFixed(1)} s (${Math.round(USERS / seconds)} entries/s)`)
console.log(`flood of 12,000 entries (${Math.round(flood.byteLength / 1024)} KB) refused: ${world.counters.get('relay.invalid.PROTO_TOO_LARGE')} (people made in tenant b: ${(await world.relay.store.listPeople()).filter((p) => p.tenantId === 'tenant-b').length})`)
console.log(`event-loop delay: max ${(delay.max / 1e6).toFixed(1)} ms, p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, mean ${(delay.mean / 1e6).toFixed(1)} ms`)
console.log(`/healthz: ${healthzAnswers} answers, slowest ${slowestHealthzMs.toFixed(1)} ms`)
await world.stop()
await pg?.drop()
