import { parseArgs } from 'node:util'
import { ConfigError } from './config/load.js'

export interface ServiceSpec<Config> {
  /** Usage text for --help and for command-line mistakes. */
  help: string
  /** Where a newcomer finds a complete config, named in config errors. */
  exampleFile: string
  load(file: string): Promise<Config>
  /** One line for --check, e.g. "2 connector(s)". */
  describe(config: Config): string
  /** Builds and starts the service; resolves with its stop function. */
  start(config: Config): Promise<{ stop(reason: string): Promise<void>; log(message: string): void }>
  /** How long a graceful stop may take before the process exits anyway. */
  stopDeadlineMs: number
}

/**
 * The command line both services share: `--config FILE`, `--check`, `--help`; a bad config exits 2 listing every
 * problem; SIGINT/SIGTERM stop the service within a deadline. Output here is for a person at a terminal, so it
 * goes to stdout/stderr directly; the service itself logs through pino.
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
  const service = await spec.start(config)
  const shutdown = (signal: string) => {
    service.log(`stopping on ${signal}`)
    const deadline = setTimeout(() => process.exit(1), spec.stopDeadlineMs)
    deadline.unref()
    service.stop(signal).then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', () => shutdown('SIGINT'))
  process.once('SIGTERM', () => shutdown('SIGTERM'))
}
