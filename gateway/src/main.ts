#!/usr/bin/env node
import { readFile } from 'node:fs/promises'
import { loadGatewayConfig } from './config/load.js'
import { runService } from './run-service.js'
import { adapterRegistry } from './adapters/registry.js'
import { Gateway } from './app.js'
import { systemClock } from './core/clock.js'
import { Counters } from './core/counters.js'
import { createLogger, prettyByDefault } from './logging.js'
import { IDENTITY_HELP, runIdentityCommand } from './identity/cli.js'

const HELP = `pbx-presence-gateway: the box next to the PBX

Usage:
  node dist/gateway.js --config FILE      run the gateway
  node dist/gateway.js --config FILE --check
                                          validate the config and exit
  node dist/gateway.js --help

${IDENTITY_HELP}
The config is JSON; gateway/examples/gateway.example.json documents every field:
  gatewayId        this box's id, as created on the relay
  relay.url        the relay's broker (mqtt://, mqtts://), with relay.username/password
  relay.enrollUrl  the relay's https address for enrollment; relay.caFingerprint (pin from
                   the console), relay.caFile, relay.proxyUrl (http://proxy:3128)
  connectors[]     one per PBX: {id, type: "osbiz", host, port, applicationId, username,
                   password, users: [{extension, name, email}]}
  dataDir          where state survives restarts (default .data/gateway)

Environment:
  LOG_PRETTY=1     human-readable logs (default when stdout is a terminal)

Exit codes: 0 stopped cleanly, 2 bad command line or config, 1 crashed.
`

async function main(): Promise<void> {
  const command = process.argv[2]
  if (command === 'enroll' || command === 'factory-reset') {
    process.exitCode = await runIdentityCommand(process.argv.slice(2))
    return
  }
  await runService({
    help: HELP,
    exampleFile: 'gateway/examples/gateway.example.json',
    load: (file) => loadGatewayConfig(file, adapterRegistry),
    describe: (config) => `${config.connectors.length} connector(s)`,
    stopDeadlineMs: 5000,
    start: async (config) => {
      const logger = createLogger({ name: 'gateway', level: config.logLevel, pretty: prettyByDefault() })
      const relayCaPem = config.relay.caFile ? await readFile(config.relay.caFile, 'utf8') : undefined
      const gateway = new Gateway(config, { logger, clock: systemClock, counters: new Counters(), registry: adapterRegistry, ...(relayCaPem ? { relayCaPem } : {}) })
      await gateway.start()
      return { stop: (reason) => gateway.stop(reason), log: (message) => logger.info(message) }
    },
  })
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway crashed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
