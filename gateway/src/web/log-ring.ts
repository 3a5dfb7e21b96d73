import { Writable } from 'node:stream'

/** One log line as the setup page shows it. */
export interface LogLine {
  seq: number
  time: number
  level: number
  component: string | undefined
  msg: string
  /** The other fields, secrets already redacted by pino. */
  detail: string
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }
export const levelName = (level: number): string => LEVELS[level] ?? String(level)

/**
 * The latest log lines in memory, for the live tail on the setup page. Fed as a pino destination (one JSON line
 * per write); listeners get each new line.
 */
export class LogRing {
  readonly #lines: LogLine[] = []
  readonly #listeners = new Set<(line: LogLine) => void>()
  readonly #capacity: number
  #seq = 0

  constructor(capacity = 500) {
    this.#capacity = capacity
  }

  /** A stream to give pino (e.g. in pino.multistream). */
  stream(): Writable {
    return new Writable({
      write: (chunk: Buffer | string, _encoding, callback) => {
        for (const text of chunk.toString().split('\n')) if (text.trim()) this.push(text)
        callback()
      },
    })
  }

  push(jsonLine: string): void {
    let record: Record<string, unknown>
    try {
      record = JSON.parse(jsonLine) as Record<string, unknown>
    } catch {
      record = { msg: jsonLine, level: 30 }
    }
    const { time, level, msg, component, pid: _pid, hostname: _host, name: _name, ...rest } = record
    const line: LogLine = {
      seq: ++this.#seq,
      time: typeof time === 'number' ? time : Date.now(),
      level: typeof level === 'number' ? level : 30,
      component: typeof component === 'string' ? component : undefined,
      msg: typeof msg === 'string' ? msg : '',
      detail: Object.keys(rest).length ? JSON.stringify(rest).slice(0, 2000) : '',
    }
    this.#lines.push(line)
    if (this.#lines.length > this.#capacity) this.#lines.shift()
    for (const listener of this.#listeners) listener(line)
  }

  lines(limit = 200): LogLine[] {
    return this.#lines.slice(-limit)
  }

  /** The last error logged by one component (the uplink's last connection error, for the tunnel status). */
  lastError(component: string): LogLine | undefined {
    for (let i = this.#lines.length - 1; i >= 0; i--) {
      const line = this.#lines[i]
      if (line && line.component === component && line.level >= 50) return line
    }
    return undefined
  }

  onLine(listener: (line: LogLine) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }
}
