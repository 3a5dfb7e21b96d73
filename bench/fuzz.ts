/**
 * Fuzzes every parser and ingress with generated inputs: `npm run fuzz` (100,000 cases per target), or
 * `npm run fuzz -- --target csta-xml --cases 20000 --seed 42` to run one target or replay a failure by its seed.
 * Prints the seed, cases/s, the outcome codes and the memory figures per target; exits 1 on any failure.
 */
import { parseArgs } from 'node:util'
import { formatOutcomes, formatReports, runFuzz, type FuzzReport } from './fuzz/runner.js'
import { FUZZ_TARGETS } from './fuzz/targets.js'

const { values } = parseArgs({
  options: {
    target: { type: 'string', multiple: true },
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    'case-limit-ms': { type: 'string' },
    'no-shrink': { type: 'boolean', default: false },
    'time-limit-s': { type: 'string' },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
})

if (values.help || values.list) {
  console.log('npm run fuzz -- [--target NAME]... [--cases N] [--seed N] [--case-limit-ms MS] [--no-shrink] [--time-limit-s S]\n\nTargets:')
  for (const target of FUZZ_TARGETS) console.log(`  ${target.name.padEnd(14)} ${target.what}`)
  process.exit(0)
}

const wanted = values.target ?? FUZZ_TARGETS.map((t) => t.name)
const unknown = wanted.filter((name) => !FUZZ_TARGETS.some((t) => t.name === name))
if (unknown.length > 0) {
  console.error(`unknown target(s): ${unknown.join(', ')}; --list shows them`)
  process.exit(2)
}
const cases = Number(values.cases)
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
if (!Number.isSafeInteger(cases) || cases < 1 || !Number.isSafeInteger(seed)) {
  console.error('--cases and --seed take whole numbers')
  process.exit(2)
}

const reports: FuzzReport[] = []
for (const target of FUZZ_TARGETS.filter((t) => wanted.includes(t.name))) {
  console.log(`fuzz ${target.name}: ${cases} cases, seed ${seed} (replay: npm run fuzz -- --target ${target.name} --seed ${seed} --cases ${cases})`)
  const onProgress = (done: number, ms: number): void => {
    console.log(`  ${done} of ${cases} cases after ${(ms / 1000).toFixed(0)} s, ${(done / (ms / 1000)).toFixed(0)} cases/s`)
  }
  const report = await runFuzz(target, { cases, seed, onProgress, ...(values['case-limit-ms'] === undefined ? {} : { caseLimitMs: Number(values['case-limit-ms']) }), shrink: !values['no-shrink'], ...(values['time-limit-s'] === undefined ? {} : { timeLimitMs: Number(values['time-limit-s']) * 1000 }) })
  reports.push(report)
  if (report.cases < cases && report.failure === undefined) console.log(`  stopped by --time-limit-s after ${report.cases} of ${cases} cases`)
  console.log(`  ${report.cases} cases in ${(report.ms / 1000).toFixed(1)} s, ${report.casesPerSecond.toFixed(0)} cases/s, max ${report.maxCaseMs.toFixed(1)} ms per case`)
  console.log(`  ${formatOutcomes(report)}`)
  if (report.failure !== undefined) console.log(`  FAILED: ${report.failure}`)
}
console.log(`\n${formatReports(reports)}`)
const failed = reports.filter((r) => r.failure !== undefined)
console.log(failed.length === 0 ? '\nzero crashes, zero hangs, memory bounded' : `\n${failed.length} target(s) failed: ${failed.map((r) => r.target).join(', ')}`)
process.exit(failed.length === 0 ? 0 : 1)
