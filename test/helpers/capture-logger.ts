import { Writable } from 'node:stream'
import pino, { type Logger } from 'pino'
import { createLogger } from '#kernel/logging.js'

export interface CapturedLine {
  level: number
  msg: string
  [key: string]: unknown
}

function captureStream(lines: CapturedLine[], text: string[]): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue
        text.push(line)
        lines.push(JSON.parse(line) as CapturedLine)
      }
      callback()
    },
  })
}

/** A real pino logger whose JSON lines are kept in memory, so tests can assert on what an operator would read. */
export function captureLogger(level = 'debug'): { logger: Logger; lines: () => CapturedLine[] } {
  const lines: CapturedLine[] = []
  return { logger: pino({ level }, captureStream(lines, [])), lines: () => lines }
}

/** The services' own logger (createLogger: redaction and all), captured; `text()` is exactly what was written. */
export function captureServiceLogger(name: string, level = 'trace'): { logger: Logger; lines: () => CapturedLine[]; text: () => string } {
  const lines: CapturedLine[] = []
  const text: string[] = []
  return { logger: createLogger({ name, level, destination: captureStream(lines, text) }), lines: () => lines, text: () => text.join('\n') }
}
