#!/usr/bin/env node
import { readFile } from 'node:fs/promises'
import * as nodeModule from 'node:module'
import { loadGatewayConfig } from './config/load.js'
import { runService } from '#kernel/run-service.js'
import { adapterRegistry } from './adapters/registry.js'
import { Gateway, GATEWAY_VERSION } from './app.js'
import { join } from 'node:path'
import { createRelayDispatcher } from './identity/relay-trust.js'
import { loadUplinkIdentity } from './identity/identity-store.js'
import { RaucSlotInstaller } from './update/slot-installer.js'
import { UpdateAgent } from './update/update-agent.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { createLogger, prettyByDefault } from '#kernel/logging.js'
import { IDENTITY_HELP, runIdentityCommand } from './identity/cli.js'
import pino from 'pino'
import { ensureBoxCertificate } from './web/box-certificate.js'
import { BoxWebServer } from './web/box-web-server.js'
import { ConnectorStore, mergeConnectors } from './web/connector-store.js'
import { LogRing } from './web/log-ring.js'
import { ConsoleIssueWriter, setupPageUrls, lanIpv4Addresses } from './appliance/console-issue.js'
import { NetworkService } from './appliance/network-service.js'
import { ServiceNotifier } from './appliance/service-notifier.js'
import { hostname } from 'node:os'

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
  web              the setup page: {enabled (true), host (0.0.0.0), port (443 as root,
                   8443 otherwise), staticDir (dist/web/box), sessionIdleMinutes (30)}.
                   HTTPS with a certificate made at first boot in <dataDir>/web/; its
                   SHA-256 fingerprint is logged and shown on the page. The first visit
                   sets the admin password with the setup code the box prints on its
                   console (stderr) and log at every start until then (kept in
                   <dataDir>/web/setup-code, 0600). web.allowedHosts: more host names
                   the page answers to. web.consoleScreenFile: where to write the
                   console screen (default $RUNTIME_DIRECTORY/console.issue under
                   systemd). Network and SSH settings made there live in
                   <dataDir>/network and <dataDir>/ssh. Connectors added there live in
                   <dataDir>/connectors.json (secrets sealed) next to the file's.

Environment:
  LOG_PRETTY=1     human-readable logs (default when stdout is a terminal)
  NOTIFY_SOCKET, WATCHDOG_USEC   set by systemd (Type=notify, WatchdogSec=): the gateway
                   reports READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 through systemd-notify
  RUNTIME_DIRECTORY  set by systemd (RuntimeDirectory=): the console screen goes to
                   console.issue there unless web.consoleScreenFile says otherwise

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
    start: async (fileConfig) => {
      // The live log tail of the setup page reads the same lines as stdout.
      const logRing = new LogRing()
      const pretty = prettyByDefault()
      const stdout = pretty ? pino.transport({ target: 'pino-pretty', options: { translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } }) as pino.DestinationStream : process.stdout
      const logger = createLogger({ name: 'gateway', level: fileConfig.logLevel, destination: pino.multistream([{ level: 'trace', stream: stdout }, { level: 'trace', stream: logRing.stream() }]) })
      // Connectors from the setup page (<dataDir>/connectors.json) run next to the file's.
      const fromUi = fileConfig.web.enabled ? await new ConnectorStore(fileConfig.dataDir).load() : []
      // The proxy set on the setup page's Network panel, unless the config file names one (read at start).
      const network = new NetworkService({ dataDir: fileConfig.dataDir, clock: systemClock, logger })
      const proxyUrl = fileConfig.relay.proxyUrl ?? (fileConfig.web.enabled ? (await network.get()).settings.httpProxy : undefined)
      const config = Object.freeze({ ...fileConfig, relay: { ...fileConfig.relay, ...(proxyUrl ? { proxyUrl } : {}) }, connectors: mergeConnectors(fileConfig.connectors, fromUi) })
      const relayCaPem = config.relay.caFile ? await readFile(config.relay.caFile, 'utf8') : undefined
      // A/B updates where the image has RAUC: the booted slot goes into the status, the agent takes cmd/update.
      const counters = new Counters()
      let updates: UpdateAgent | undefined
      let bootedSlot: string | undefined
      if (config.updates.raucKeyring) {
        const installer = new RaucSlotInstaller({ keyring: config.updates.raucKeyring, ...(config.updates.rebootRequestFile ? { rebootRequestFile: config.updates.rebootRequestFile } : {}) })
        bootedSlot = await installer.bootedSlot().catch((err: unknown) => {
          logger.warn({ err: (err as Error).message }, 'booted slot unknown')
          return undefined
        })
        const identity = await loadUplinkIdentity(config.dataDir)
        // Made at the first download: undici loads only when an update comes.
        let relayDispatcher: ReturnType<typeof createRelayDispatcher> | undefined
        const dispatcher = () => (relayDispatcher ??= createRelayDispatcher({ caPems: [...(relayCaPem ? [relayCaPem] : []), ...(identity ? [identity.tls.caPem] : [])], proxyUrl: config.relay.proxyUrl })
          .catch((err: unknown) => { relayDispatcher = undefined; throw err }))
        updates = new UpdateAgent({ dir: join(config.dataDir, 'update'), runningVersion: GATEWAY_VERSION, healthTimeoutMs: config.updates.healthTimeoutS * 1000 }, {
          installer, clock: systemClock, logger, counters, dispatcher,
          // Healthy: the service runs, the setup page answers (it is up once start returned) and the tunnel is connected if enrolled.
          healthy: async () => gateway.running && (!gateway.tunnel().enrolled || gateway.relayConnected),
        })
      }
      const gateway = new Gateway(config, { logger, clock: systemClock, counters, registry: adapterRegistry, ...(relayCaPem ? { relayCaPem } : {}), ...(updates ? { updates } : {}), ...(bootedSlot ? { bootedSlot } : {}) })
      await gateway.start()
      let web: BoxWebServer | undefined
      let screen: ConsoleIssueWriter | undefined
      let setupUrl: string | undefined
      if (config.web.enabled) {
        const certificate = await ensureBoxCertificate(config.dataDir)
        web = new BoxWebServer({
          gateway, config, registry: adapterRegistry, logger, clock: systemClock, logRing, certificate,
          fileConnectorIds: new Set(fileConfig.connectors.map((c) => c.id)),
          // stderr: systemd sends it to the console and the journal, where the installer reads the setup code.
          console: process.stderr,
          network,
          onBoxStateChange: () => { void screen?.refresh() },
          ...(updates ? { updates } : {}),
        })
        const { url, port } = await web.start()
        // Node writes its compile cache (NODE_COMPILE_CACHE, set by the appliance's unit) only at a clean exit; a box
        // that loses power never would. Everything the start needs is compiled by now: write it at once (Node 22.10+).
        ;(nodeModule as { flushCompileCache?: () => void }).flushCompileCache?.()
        logger.info({ url, fingerprint256: certificate.fingerprint256, names: certificate.names }, 'setup page listening: compare the certificate fingerprint with the browser\'s')
        setupUrl = setupPageUrls({ hostname: hostname(), ipv4: lanIpv4Addresses(), port })[0] ?? url
        const screenFile = config.web.consoleScreenFile ?? ConsoleIssueWriter.defaultFile(process.env)
        if (screenFile) {
          screen = new ConsoleIssueWriter({ file: screenFile, dataDir: config.dataDir, port, fingerprint256: certificate.fingerprint256, clock: systemClock, logger })
          await screen.start()
        }
      }
      // After the setup page is up: finishing an update after its reboot checks that the box is healthy.
      await updates?.start()
      const notifier = new ServiceNotifier({
        logger, clock: systemClock, env: process.env,
        status: () => {
          const up = gateway.links().filter((l) => l.state === 'connected').length
          return [...(setupUrl ? [`setup page at ${setupUrl}`] : []), `${up} of ${gateway.links().length} connectors up`, gateway.relayConnected ? 'relay connected' : 'relay not connected'].join('; ')
        },
      })
      await notifier.ready()
      return {
        stop: async (reason) => {
          await notifier.stopping()
          screen?.stop()
          await web?.stop()
          await updates?.stop()
          await gateway.stop(reason)
        },
        log: (message) => logger.info(message),
        logError: (message, err) => logger.error({ err }, message),
      }
    },
  })
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway crashed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
