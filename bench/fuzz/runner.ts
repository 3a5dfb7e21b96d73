import fc from 'fast-check'
import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/**
 * One fuzz target: a generator of inputs and the real parser or ingress that takes them. A case fails when
 * `run` throws (an exception escaped the parser: a crash), takes longer than the case limit (a hang), leaves
 * the service unable to answer its health probe, makes the service log an error, or pollutes Object.prototype.
 */
export interface FuzzTarget<T> {
  readonly name: string
  /** What is fed to what, one line. */
  readonly what: string
  /** A case slower than this is a hang (default: the run's caseLimitMs, 1000 ms). */
  readonly caseLimitMs?: number
  arbitrary(): fc.Arbitrary<T>
  open(): Promise<FuzzSession<T>>
}

export interface FuzzSession<T> {
  /** Runs one case and says what the target made of it (a decode error code, an HTTP status and error code). */
  run(input: T): Promise<string> | string
  /** Whether the service still answers (e.g. GET /healthz). */
  health?(): Promise<boolean>
  /** Error-level lines the service logged since the last call: each one is a failure. */
  problems?(): string[]
  /** Outcome codes seen inside the service rather than in the answer (e.g. the relay's drop counters). */
  codes?(): string[]
  /** Waits until the service has processed everything it accepted (queues drained). */
  settle?(): Promise<void>
  close(): Promise<void>
}

export interface FuzzOptions {
  cases: number
  seed: number
  /** A case using more CPU than this is a hang (default 1000 ms); one taking 5× as long on the clock is aborted. */
  caseLimitMs?: number
  /** Health probe every this many cases (default 500). */
  healthEvery?: number
  /** Heap growth after GC beyond this is a failure (default 96 MiB). */
  heapBoundBytes?: number
  /** Shrink a failing case to a minimal one (default true). */
  shrink?: boolean
  /** Stop a target after this long and report the cases run so far (default: no limit). */
  timeLimitMs?: number
  /** Called about every `progressEveryMs` (default 30 s) with the cases run so far: long runs show they move. */
  onProgress?(cases: number, ms: number): void
  progressEveryMs?: number
}

export interface FuzzReport {
  target: string
  seed: number
  cases: number
  ms: number
  casesPerSecond: number
  /** Outcome code → how many cases ended so. maxCaseMs is CPU time of the process during the case. */
  outcomes: Map<string, number>
  maxCaseMs: number
  healthChecks: number
  maxHealthMs: number
  heapBefore: number
  heapAfter: number
  rssBefore: number
  rssAfter: number
  /** Undefined when every case passed. */
  failure?: string
}

let collectGarbage: (() => void) | undefined
/** A real GC before heap figures (node without --expose-gc gets it switched on here). */
export function gc(): void {
  if (collectGarbage === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc
    if (exposed) collectGarbage = exposed
    else {
      setFlagsFromString('--expose-gc')
      collectGarbage = runInNewContext('gc') as () => void
    }
  }
  collectGarbage()
  collectGarbage()
}

class CaseFailure extends Error {}

function withLimit<R>(work: Promise<R> | R, limitMs: number, what: string): Promise<R> | R {
  if (!(work instanceof Promise)) return work
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new CaseFailure(`hang: ${what} did not finish within ${limitMs * 5} ms`)), limitMs * 5)
  })
  return Promise.race([work, limit]).finally(() => clearTimeout(timer))
}

/** Runs `cases` generated inputs through a target with a fixed seed; never throws, reports a failure instead. */
export async function runFuzz<T>(target: FuzzTarget<T>, options: FuzzOptions): Promise<FuzzReport> {
  const caseLimitMs = target.caseLimitMs ?? options.caseLimitMs ?? 1000
  const healthEvery = options.healthEvery ?? 500
  const heapBound = options.heapBoundBytes ?? 96 * 1024 * 1024
  const outcomes = new Map<string, number>()
  const session = await target.open()
  const escaped: string[] = []
  const onEscape = (error: unknown): void => {
    escaped.push(error instanceof Error ? (error.stack ?? error.message) : String(error))
  }
  process.on('uncaughtException', onEscape)
  process.on('unhandledRejection', onEscape)
  const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).length
  let mainPhase = true
  let count = 0
  let maxCaseMs = 0
  let healthChecks = 0
  let maxHealthMs = 0
  const progressEvery = options.progressEveryMs ?? 30_000
  let lastProgress = performance.now()

  const probe = async (): Promise<void> => {
    if (!session.health) return
    const started = performance.now()
    const ok = await withLimit(session.health(), caseLimitMs, 'the health probe')
    const ms = performance.now() - started
    healthChecks++
    maxHealthMs = Math.max(maxHealthMs, ms)
    if (!ok) throw new CaseFailure('the service stopped answering its health probe')
    if (ms > caseLimitMs) throw new CaseFailure(`the health probe took ${Math.round(ms)} ms (limit ${caseLimitMs} ms): the event loop was blocked`)
  }
  const check = (): void => {
    const problems = session.problems?.() ?? []
    if (problems.length > 0) throw new CaseFailure(`the service logged an error: ${problems.slice(0, 3).join(' | ')}`)
    if (escaped.length > 0) throw new CaseFailure(`an exception escaped: ${escaped.splice(0).slice(0, 2).join(' | ')}`)
    if (Object.getOwnPropertyNames(Object.prototype).length !== prototypeKeys) {
      throw new CaseFailure(`Object.prototype was polluted: ${Object.getOwnPropertyNames(Object.prototype).join(', ')}`)
    }
  }

  gc()
  const heapBefore = process.memoryUsage().heapUsed
  const rssBefore = process.memoryUsage().rss
  const started = performance.now()
  let failure: string | undefined
  try {
    await fc.assert(
      fc.asyncProperty(target.arbitrary(), async (input) => {
        // CPU time, not wall time: on a shared machine another process may hold the core, which is not our hang.
        const cpuStarted = process.cpuUsage()
        let outcome: string
        try {
          outcome = await withLimit(session.run(input), caseLimitMs, 'the case')
        } catch (error) {
          // Take the service's error lines with the failure, so they are not blamed on the next case.
          const logged = session.problems?.() ?? []
          const also = logged.length === 0 ? '' : `\n  the service logged: ${logged.slice(0, 2).join(' | ')}`
          if (error instanceof CaseFailure) throw new CaseFailure(`${error.message}${also}`)
          throw new CaseFailure(`crash: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}${also}`)
        }
        const cpu = process.cpuUsage(cpuStarted)
        const ms = (cpu.user + cpu.system) / 1000
        if (mainPhase) {
          count++
          maxCaseMs = Math.max(maxCaseMs, ms)
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
          if (options.onProgress && performance.now() - lastProgress >= progressEvery) {
            lastProgress = performance.now()
            options.onProgress(count, lastProgress - started)
          }
        }
        if (ms > caseLimitMs) throw new CaseFailure(`hang: one case took ${Math.round(ms)} ms of CPU (limit ${caseLimitMs} ms)`)
        check()
        if (mainPhase && count % healthEvery === 0) {
          await session.settle?.()
          check()
          await probe()
        }
      }),
      { seed: options.seed, numRuns: options.cases, endOnFailure: options.shrink === false, ...(options.timeLimitMs === undefined ? {} : { interruptAfterTimeLimit: options.timeLimitMs, markInterruptAsFailure: false }), reporter: (details) => {
        mainPhase = false
        if (details.failed) {
          const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)
          failure = `${error}\n  counterexample: ${preview(details.counterexample)}\n  seed ${details.seed}, path "${details.counterexamplePath ?? ''}"`
        }
      } },
    )
    await session.settle?.()
    check()
    await probe()
  } catch (error) {
    failure ??= error instanceof Error ? error.message : String(error)
  } finally {
    mainPhase = false
    process.off('uncaughtException', onEscape)
    process.off('unhandledRejection', onEscape)
  }
  const ms = performance.now() - started
  for (const code of session.codes?.() ?? []) outcomes.set(code, outcomes.get(code) ?? 0)
  gc()
  const heapAfter = process.memoryUsage().heapUsed
  const rssAfter = process.memoryUsage().rss
  if (failure === undefined && heapAfter - heapBefore > heapBound) {
    failure = `memory: the heap grew by ${mib(heapAfter - heapBefore)} MiB after GC (bound ${mib(heapBound)} MiB)`
  }
  await session.close()
  return {
    target: target.name, seed: options.seed, cases: count, ms, casesPerSecond: count / (ms / 1000), outcomes, maxCaseMs, healthChecks, maxHealthMs,
    heapBefore, heapAfter, rssBefore, rssAfter, ...(failure === undefined ? {} : { failure }),
  }
}

function preview(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) => (Buffer.isBuffer(v) || v instanceof Uint8Array ? `hex:${Buffer.from(v).toString('hex')}` : v))
  return text === undefined ? String(value) : text.length > 2000 ? `${text.slice(0, 2000)}… (${text.length} chars)` : text
}

export function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1)
}

/** The per-target figures as a fixed-width table. */
export function formatReports(reports: readonly FuzzReport[]): string {
  const rows = reports.map((r) => [
    r.target, String(r.seed), String(r.cases), r.casesPerSecond.toFixed(0), String(r.outcomes.size), r.maxCaseMs.toFixed(1),
    `${r.healthChecks}/${r.maxHealthMs.toFixed(1)}`, `${mib(r.heapBefore)}→${mib(r.heapAfter)}`, `${mib(r.rssBefore)}→${mib(r.rssAfter)}`, r.failure === undefined ? 'ok' : 'FAIL',
  ])
  const head = ['target', 'seed', 'cases', 'cases/s', 'codes', 'max ms', 'health n/max ms', 'heap MiB', 'RSS MiB', 'result']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
  return [line(head), ...rows.map(line)].join('\n')
}

export function formatOutcomes(report: FuzzReport): string {
  const sorted = [...report.outcomes.entries()].sort((a, b) => b[1] - a[1])
  return `${report.target}: ${sorted.map(([code, n]) => `${code}×${n}`).join(', ')}`
}
