/**
 * A time-compressed day of Teams presence through change notifications (relay + Graph simulator on one scaled
 * clock, random Teams activity, the simulator's fault knobs every hour). Prints what happened and whether the
 * relay kept up. The same run, with assertions, is test/notify/day-run.test.ts.
 *
 *   npx tsx bench/notify-day.ts --hours 24 --people 240 --factor 600
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { DEFAULT_DAY_RUN, runCompressedDay } from '../test/notify/fixtures/day-run.js'

const { values } = parseArgs({
  options: {
    hours: { type: 'string', default: String(DEFAULT_DAY_RUN.hours) },
    people: { type: 'string', default: String(DEFAULT_DAY_RUN.people) },
    factor: { type: 'string', default: String(DEFAULT_DAY_RUN.factor) },
    accounts: { type: 'string', default: String(DEFAULT_DAY_RUN.accounts) },
    'shard-size': { type: 'string', default: String(DEFAULT_DAY_RUN.maxShardSize) },
    'mean-change-min': { type: 'string', default: String(DEFAULT_DAY_RUN.meanChangeMs / 60_000) },
    seed: { type: 'string', default: String(DEFAULT_DAY_RUN.seed) },
    help: { type: 'boolean', short: 'h' },
  },
})
if (values.help) {
  process.stdout.write('npx tsx bench/notify-day.ts [--hours N] [--people N] [--factor N] [--accounts N] [--shard-size N] [--mean-change-min N] [--seed N]\n')
  process.exit(0)
}
const lag = monitorEventLoopDelay({ resolution: 10 })
lag.enable()
const r = await runCompressedDay({
  hours: Number(values.hours),
  people: Number(values.people),
  factor: Number(values.factor),
  accounts: Number(values.accounts),
  maxShardSize: Number(values['shard-size']),
  meanChangeMs: Number(values['mean-change-min']) * 60_000,
  seed: Number(values.seed),
})
const c = r.counters
const n = (name: string) => c[name] ?? 0
const lines = [
  `simulated hours          ${r.hours.length} (${Math.round(r.realSeconds)} s real, ${values.factor}x)`,
  `people / shards          ${values.people} / ${r.shards}`,
  `Teams transitions        ${r.transitions} (${r.longTransitions} lasted longer than the reconciliation interval)`,
  `notifications accepted   ${n('notify.accepted')} (rejected ${n('notify.rejected')})`,
  `lifecycle events         reauthorizationRequired ${n('notify.lifecycle.reauthorizationRequired')}, subscriptionRemoved ${n('notify.lifecycle.subscriptionRemoved')}, missed ${n('notify.lifecycle.missed')}`,
  `faults injected          ${Object.entries(r.faults).map(([k, v]) => `${k} ${v}`).join(', ')}`,
  `subscriptions            created ${n('subscriptions.created')}, renewed ${n('subscriptions.renewed')}, reauthorized ${n('subscriptions.reauthorized')}, recreated after 404 ${n('subscriptions.gone')}, conflicts ${n('subscriptions.conflicts')}`,
  `reconciliations          periodic ${n('presence.reconcile.periodic')}, after gaps ${n('presence.reconcile.requested')}; presence reads ${n('presence.read.requests')} (${n('presence.read.reconciled')} person-reads subscribed, ${n('presence.read.polled')} polled, ${n('presence.read.superseded')} superseded by newer notifications)`,
  `rejected by reason       ${Object.entries(c).filter(([k]) => k.startsWith('notify.rejected.') || k.startsWith('notify.ignored.')).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`,
  `Graph delivery           ${Object.entries(r.delivery).map(([k, v]) => `${k} ${v}`).join(', ')}; relay queue full ${n('notify.queue.full')}`,
  `event loop delay         p99 ${Math.round(lag.percentile(99) / 1e6)} ms, max ${Math.round(lag.max / 1e6)} ms real (× ${values.factor} simulated)`,
  `hours ending in step     ${r.hours.filter((h) => h.mismatches.length === 0).length} of ${r.hours.length}`,
  `long states unobserved   ${r.unobserved.length}`,
]
process.stdout.write(`${lines.join('\n')}\n`)
for (const h of r.hours) if (h.mismatches.length > 0) process.stdout.write(`hour ${h.hour}: ${h.mismatches.slice(0, 5).join('; ')}\n`)
for (const u of r.unobserved.slice(0, 10)) process.stdout.write(`unobserved: ${u}\n`)
process.exit(r.unobserved.length === 0 && r.hours.every((h) => h.mismatches.length === 0) ? 0 : 1)
