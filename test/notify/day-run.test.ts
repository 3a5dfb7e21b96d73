import t from 'tap'
import { runCompressedDay } from './fixtures/day-run.js'

// 24 simulated hours at 600× (about 150 real seconds): 200 people in two shards, two service accounts, faults every
// hour. The file's timeout is raised for it below. At 1,200× the one Node process holding relay, simulator and
// PGlite can stall long enough (seconds of real time = hours simulated) that a run misses one of ~1,800 long
// states when other test files share the two cores; `npx tsx bench/notify-day.ts` runs that speed on its own
// (see the notifications README).
t.setTimeout(300_000)
const hours = Number(process.env['DAY_RUN_HOURS'] ?? 24)
const factor = Number(process.env['DAY_RUN_FACTOR'] ?? 600)
const result = await runCompressedDay({ hours, factor })

t.test('the relay ends every simulated hour with the same presence as Teams for every person', async (t) => {
  t.equal(result.hours.length, hours)
  for (const hour of result.hours) t.same(hour.mismatches, [], `hour ${hour.hour}`)
})

t.test('no Teams state that lasted longer than the reconciliation interval went unobserved', async (t) => {
  t.ok(result.longTransitions > 50 * hours, `${result.longTransitions} long states checked`)
  t.same(result.unobserved, [])
})

t.test('the run exercised what it claims to', async (t) => {
  t.equal(result.shards, 2, 'two shards')
  t.ok(result.transitions > 50 * hours, `${result.transitions} transitions`)
  t.ok((result.counters['notify.accepted'] ?? 0) > 50 * hours, 'notifications delivered')
  t.ok((result.faults['notificationsDropped'] ?? 0) >= hours && (result.faults['subscriptionRemoved'] ?? 0) >= 1, 'faults injected')
  t.ok((result.counters['subscriptions.renewed'] ?? 0) >= hours, 'renewals')
  t.equal(result.counters['notify.rejected'] ?? 0, 0, 'nothing genuine rejected')
  t.comment(JSON.stringify({ realSeconds: Math.round(result.realSeconds), transitions: result.transitions, longTransitions: result.longTransitions, faults: result.faults }))
})
