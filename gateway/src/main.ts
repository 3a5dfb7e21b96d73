#!/usr/bin/env node
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { ConfigError, loadGatewayConfig } from './config/load.js'
import { adapterRegistry } from './adapters/registry.js'
import { Gateway } from './app.js'
import { systemClock } from './core/clock.js'
import { Counters } from './core/counters.js'
import { createLogger } from './logging.js'

const HELP = `pbx-presence-gateway: the box next to the PBX

Usage:
  node dist/gateway.js --config FILE      run the gateway
  node dist/gateway.js --config FILE --check
                                          validate the config and exit
  node dist/gateway.js --help

The config is JSON; gateway/examples/gateway.example.json documents every field:
  gatewayId        this box's id, as created on the relay
  relay.url        the relay's broker (mqtt://, mqtts://), with relay.username/password
  connectors[]     one per PBX: {id, type: "osbiz", host, port, applicationId, username,
                   password, users: [{extension, name, email}]}
  dataDir          where state survives restarts (default .data/gateway)

Environment:
  LOG_PRETTY=1     human-readable logs (default when stdout is a terminal)

Exit codes: 0 stopped cleanly, 2 bad command line or config, 1 crashed.
`

async function main(): Promise<void> {
  let args
  try {
    args = parseArgs({ options: { config: { type: 'string', short: 'c' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }).values
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${HELP}`)
    process.exit(2)
  }
  if (args.help) {
    process.stdout.write(HELP)
    return
  }
  if (!args.config) {
    process.stderr.write(`missing --config FILE\n\n${HELP}`)
    process.exit(2)
  }
  let config
  try {
    config = await loadGatewayConfig(args.config, adapterRegistry)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nFix the file and start again; see gateway/examples/gateway.example.json.\n`)
      process.exit(2)
    }
    throw err
  }
  if (args.check) {
    process.stdout.write(`${args.config}: OK (${config.connectors.length} connector(s))\n`)
    return
  }
  const logger = createLogger({ name: 'gateway', level: config.logLevel, pretty: process.env.LOG_PRETTY === '1' || (process.env.LOG_PRETTY !== '0' && process.stdout.isTTY) })
  const relayCaPem = config.relay.caFile ? await readFile(config.relay.caFile, 'utf8') : undefined
  const gateway = new Gateway(config, { logger, clock: systemClock, counters: new Counters(), registry: adapterRegistry, ...(relayCaPem ? { relayCaPem } : {}) })
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'stopping')
    const deadline = setTimeout(() => process.exit(1), 5000)
    deadline.unref()
    gateway.stop(signal).then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGINT', () => shutdown('SIGINT'))
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  await gateway.start()
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway crashed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
