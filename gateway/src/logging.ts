import pino, { type Logger, type LoggerOptions } from 'pino'

/** Paths never written to logs. */
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password', 'secret', '*.secret', '*.clientSecret', '*.*.clientSecret',
  'token', '*.token', 'authorization', '*.authorization', 'headers.authorization',
]

/** Human-readable logs when asked (LOG_PRETTY=1) or when a person is watching (a terminal), JSON otherwise. */
export function prettyByDefault(): boolean {
  return process.env.LOG_PRETTY === '1' || (process.env.LOG_PRETTY !== '0' && process.stdout.isTTY === true)
}

export function createLogger(options: { level?: string; name: string; pretty?: boolean; destination?: pino.DestinationStream }): Logger {
  const base: LoggerOptions = {
    name: options.name,
    level: options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  }
  if (options.destination) return pino(base, options.destination)
  if (options.pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } } })
  }
  return pino(base)
}
