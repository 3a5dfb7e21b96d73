#!/usr/bin/env node
import { readFile } from 'node:fs/promises'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { createLogger, prettyByDefault } from '#kernel/logging.js'
import { Relay } from './app.js'
import { loadRelayConfig } from './config/load.js'
import { runService } from '#kernel/run-service.js'

const HELP = `pbx-presence-relay: the cloud side, between the gateways and Microsoft Graph

Usage:
  node dist/cloud-relay.js --config FILE      run the relay
  node dist/cloud-relay.js --config FILE --check
                                              validate the config and exit
  node dist/cloud-relay.js --help

The config is JSON; cloud-relay/examples/relay.example.json documents every field:
  broker        embedded MQTT broker (host, port) or an external one (mode "external", url)
  database      PostgreSQL url, or PGlite in database.pgliteDir when no url is set
  graph         authority and Graph URLs; graph.notifications (https publicUrl, ...) turns on
                presence change notifications through sync service accounts
  tenants[]     each with Graph app credentials (tenantId, clientId, clientSecret) and its gateways
  sync          mapping options (busyPresence, meetingSetsDnd, ...) and timings

Secrets (clientSecret, relayPassword, gateway passwords, apiToken, database.url) can be given as
{"env": "VARIABLE"} or {"file": "/path"} (the file chmod 600); change-me placeholders are refused.

Environment:
  DATABASE_URL  PostgreSQL connection URL; overrides database.url
  RELAY_SEAL_KEY  key (32 bytes, base64 or hex) sealing secrets at rest; overrides secrets.sealKeyFile
  LOG_PRETTY=1  human-readable logs (default when stdout is a terminal)

Cloud console: https://<relay>/console/. While no console account exists, the log at start shows a
  one-time setupSecret (also in console-setup-secret next to secrets.sealKeyFile, mode 0600): the
  first visit needs it, or http.apiToken, to create the first operator.

Exit codes: 0 stopped cleanly, 2 bad command line or config, 1 crashed (an uncaught exception is
logged first; an unhandled promise rejection is logged and the relay keeps serving).
`

async function main(): Promise<void> {
  await runService({
    help: HELP,
    exampleFile: 'cloud-relay/examples/relay.example.json',
    load: loadRelayConfig,
    describe: (config) => `${config.tenants.length} tenant(s)`,
    stopDeadlineMs: 10_000,
    start: async (config) => {
      const logger = createLogger({ name: 'relay', level: config.logLevel, pretty: prettyByDefault() })
      const graphCaPem = config.graph.caFile ? await readFile(config.graph.caFile, 'utf8') : undefined
      const sealKey = process.env.RELAY_SEAL_KEY || undefined
      const relay = new Relay(config, { logger, clock: systemClock, counters: new Counters(), graphCaPem, sealKey, databaseUrl: process.env.DATABASE_URL || undefined })
      await relay.start()
      return { stop: () => relay.stop(), log: (message) => logger.info(message), logError: (message, err) => logger.error({ err }, message) }
    },
  })
}

main().catch((err: unknown) => {
  process.stderr.write(`relay failed: ${(err as Error).message}\n`)
  process.exit(1)
})
