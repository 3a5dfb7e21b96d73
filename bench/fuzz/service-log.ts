import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'

/**
 * A logger for a service under fuzzing: keeps only error-level lines (each one is a failure of the case that
 * caused it) and counts the rest, so 100,000 cases of warnings do not fill the heap.
 */
export function serviceLog(): { logger: Logger; takeErrors(): string[]; warnings(): number } {
  let errors: string[] = []
  let warnings = 0
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue
        const level = Number(/"level":(\d+)/.exec(line)?.[1] ?? 0)
        if (level >= 50) {
          if (errors.length < 20) errors.push(line.length > 1500 ? `${line.slice(0, 1500)}…` : line)
        } else if (level >= 40) warnings++
      }
      callback()
    },
  })
  return {
    logger: pino({ level: 'warn' }, stream),
    takeErrors() {
      const taken = errors
      errors = []
      return taken
    },
    warnings: () => warnings,
  }
}
