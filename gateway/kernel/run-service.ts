import { parseArgs } from 'node:util'
import { ConfigError } from './config-check.js'

export interface ServiceSpec<Config> {
  /** Usage text for --help and for command-line mistakes. */
  help: string
  /** Where a newcomer finds a complete config, named in config errors. */
  exampleFile: string
  load(file: string): Promise<Config>
  /** One line for --check, e.g. "2 connector(s)". */
  describe(config: Config): string
  /** Builds and starts the service; resolves with its stop function. */
  start(config: Config): Promise<{
    stop(reason: string): Promise<void>
    log(message: string): void
    /** Logs an error with its message (the service's logger); without it, errors go to stderr. */
    logError?(message: string, err: unknown): void
  }>
  /** How long a graceful stop may take before the process exits anyway. */
  stopDeadlineMs: number
}

/**
 * The command line both services share: `--config FILE`, `--check`, `--help`; a bad config exits 2 listing every
 * problem; SIGINT/SIGTERM stop the service within a deadline. Output here is for a person at a terminal, so it
 * goes to stdout/stderr directly; the service itself logs through pino.
 *
 * What a bug leaves unhandled is never silent: an unhandled promise rejection is logged with its error and the
 * service keeps serving (one failed request must not take down every tenant); an uncaught exception is logged,
 * the service is stopped within its deadline, and the process exits 1 so systemd restarts it from a clean state.
 */
export async function runService<Config>(spec: ServiceSpec<Config>): Promise<void> {
  let args
  try {
    args = parseArgs({ options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }).values
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${spec.help}`)
    process.exit(2)
  }
  if (args.help) {
    process.stdout.write(spec.help)
    return
  }
  if (!args.config) {
    process.stderr.write(`missing --config FILE\n\n${spec.help}`)
    process.exit(2)
  }
  let config: Config
  try {
    config = await spec.load(args.config)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nFix the file and start again; see ${spec.exampleFile}.\n`)
      process.exit(2)
    }
    throw err
  }
  if (args.check) {
    process.stdout.write(`${args.config}: OK (${spec.describe(config)})\n`)
    return
  }
  let service: Awaited<ReturnType<ServiceSpec<Config>['start']>> | undefined
  const logError = (message: string, err: unknown) => {
    if (service?.logError) service.logError(message, err)
    else process.stderr.write(`${message}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  }
  let stopping = false
  const shutdown = (signal: string, exitCode: number) => {
    if (stopping) return
    stopping = true
    service?.log(`stopping on ${signal}`)
    const deadline = setTimeout(() => process.exit(1), spec.stopDeadlineMs)
    deadline.unref()
    if (!service) process.exit(exitCode)
    else service.stop(signal).then(() => process.exit(exitCode), () => process.exit(1))
  }
  process.on('unhandledRejection', (err) => {
    logError('unhandled promise rejection (a bug; the service keeps serving)', err)
  })
  process.on('uncaughtException', (err) => {
    logError('uncaught exception (a bug): stopping the service and exiting with code 1 so the supervisor restarts it', err)
    shutdown('uncaughtException', 1)
  })
  service = await spec.start(config)
  process.once('SIGINT', () => shutdown('SIGINT', 0))
  process.once('SIGTERM', () => shutdown('SIGTERM', 0))
}
