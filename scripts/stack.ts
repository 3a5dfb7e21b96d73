/**
 * The whole product on one machine: Graph simulator, cloud relay, OSBiz simulator and a gateway, wired the way
 * a real installation is (MQTT between gateway and relay, HTTPS to Graph, CSTA over TCP to the PBX).
 * Used by `npm start` (the demo), the end-to-end tests and the latency benchmark.
 */
import { randomBytes } from 'node:crypto'
import { createServer, isIP } from 'node:net'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { GraphSimulator } from '../cloud-relay/graph-sim/graph-simulator.js'
import { Relay } from '../cloud-relay/src/app.js'
import { parseRelayConfig } from '../cloud-relay/src/config/load.js'
import type { RelayConfig } from '../cloud-relay/src/config/schema.js'
import { OsbizSimulator } from '../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { adapterRegistry } from '../gateway/src/adapters/registry.js'
import { Gateway } from '../gateway/src/app.js'
import { parseGatewayConfig, type LoadedGatewayConfig } from '../gateway/src/config/load.js'
import { systemClock } from '#kernel/clock.js'
import { EnrollmentClient } from '../gateway/src/identity/enrollment-client.js'
import { IdentityStore, loadUplinkIdentity } from '../gateway/src/identity/identity-store.js'
import { Counters } from '#kernel/counters.js'

export interface DemoPerson {
  extension: string
  name: string
  /** Also the person's UPN and e-mail in the simulated tenant. */
  email: string
}

export const DEMO_PEOPLE: readonly DemoPerson[] = [
  { extension: '201', name: 'Alice Adams', email: 'alice@contoso.example' },
  { extension: '202', name: 'Bob Baker', email: 'bob@contoso.example' },
  { extension: '203', name: 'Carol Clark', email: 'carol@contoso.example' },
]

export interface StackOptions {
  /** Folder for state (PGlite, gateway state, CA file). */
  dataDir: string
  logger: Logger
  /** 'embedded' (aedes inside the relay) or the URL of an external broker such as the Mosquitto service. */
  broker?: 'embedded' | { url: string }
  /** PostgreSQL URL; PGlite in dataDir when absent. */
  databaseUrl?: string | undefined
  people?: readonly DemoPerson[]
  gatewayId?: string
  /** Port of the embedded broker (0 = any free one). */
  brokerPort?: number
  sync?: Partial<RelayConfig['sync']>
  /** People with an extension on a second PBX (a second OSBiz simulator, connector "osbiz-branch"). */
  branchPeople?: readonly DemoPerson[]
  /** Log level written into the services' configs (default: the logger's level). */
  serviceLogLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Where the relay serves the console's built files from (default dist/web/console). */
  consoleDir?: string
  /** Gateway config fields to replace after validation, so tests can use durations below the schema's minimums. */
  gatewayOverrides?: Partial<LoadedGatewayConfig>
  /**
   * The production tunnel: the embedded broker takes only relay-CA client certificates (mqtts and wss), the relay
   * serves HTTPS with its own CA, and the gateway is created through enrollment and enrolls with a one-time code
   * (`enrollGateway`) instead of a password. Ports 0 pick free ones.
   */
  secure?: {
    mqttsPort?: number
    wssPort?: number
    httpsPort?: number
    /** What enrolled boxes are told to dial (default the broker's mqtts then wss URL), e.g. a fault proxy in front. */
    brokerUrls?: readonly string[]
    /** Extra names or IPs the relay's HTTPS and broker certificates carry, for a box that dials another address (the VM boot test: 10.0.2.100). */
    publicHosts?: readonly string[]
    /** An external Mosquitto instead of the embedded broker: the relay writes its configuration into configDir. */
    mosquitto?: { configDir: string; port: number; user?: string }
  }
}

export class Stack {
  readonly options: StackOptions
  readonly people: readonly DemoPerson[]
  readonly gatewayId: string
  readonly gatewayPassword = randomBytes(12).toString('hex')
  readonly relayPassword = randomBytes(12).toString('hex')
  readonly graphClient = { clientId: '', clientSecret: randomBytes(16).toString('hex') }
  readonly relayCounters = new Counters()
  readonly gatewayCounters = new Counters()
  graph!: GraphSimulator
  pbx!: OsbizSimulator
  /** The second PBX, when options.branchPeople is set. */
  branchPbx: OsbizSimulator | undefined
  relay: Relay | undefined
  gateway: Gateway | undefined
  #brokerUrl = ''
  #caFile = ''
  #enrollUrl = ''
  #caPin = ''
  #securePorts: { mqtts: number; wss: number; https: number } | undefined

  constructor(options: StackOptions) {
    this.options = options
    this.people = options.people ?? DEMO_PEOPLE
    this.gatewayId = options.gatewayId ?? 'gw-demo'
  }

  get brokerUrl(): string {
    return this.#brokerUrl
  }

  get caFile(): string {
    return this.#caFile
  }

  /** Starts the simulators, then the relay, then the gateway. */
  async start(): Promise<void> {
    await this.startSimulators()
    await this.startRelay()
    await this.startGateway()
  }

  async startSimulators(): Promise<void> {
    await mkdir(this.options.dataDir, { recursive: true })
    this.graph = new GraphSimulator({
      apps: [{ displayName: 'PBX presence relay', clientSecret: this.graphClient.clientSecret }],
      users: this.people.map((p) => ({ displayName: p.name, userPrincipalName: p.email })),
      logger: this.options.logger.child({ component: 'graph-sim' }),
    })
    await this.graph.start()
    this.graphClient.clientId = this.graph.apps[0]!.clientId
    this.#caFile = join(this.options.dataDir, 'graph-sim-ca.pem')
    await writeFile(this.#caFile, this.graph.caPem)
    this.pbx = new OsbizSimulator({
      users: this.people.map((p) => ({ extension: p.extension, name: p.name, email: p.email })),
      credentials: { applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret' },
      logger: this.options.logger.child({ component: 'osbiz-sim' }),
    })
    await this.pbx.start()
    if (this.options.branchPeople) {
      this.branchPbx = new OsbizSimulator({
        users: this.options.branchPeople.map((p) => ({ extension: p.extension, name: p.name, email: p.email })),
        credentials: { applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret' },
        logger: this.options.logger.child({ component: 'osbiz-sim-branch' }),
      })
      await this.branchPbx.start()
    }
  }

  relayConfig(): RelayConfig {
    if (!this.#brokerUrl) this.#brokerUrl = this.#plannedBrokerUrl()
    const external = this.options.broker !== undefined && this.options.broker !== 'embedded' ? this.options.broker : undefined
    const secure = this.options.secure
    return parseRelayConfig({
      logLevel: this.options.serviceLogLevel ?? this.options.logger.level,
      broker: secure?.mosquitto
        ? {
          mode: 'external', url: `mqtts://127.0.0.1:${secure.mosquitto.port}`, relayPassword: this.relayPassword, relayClientId: 'relay:main',
          mosquitto: {
            configDir: secure.mosquitto.configDir, port: secure.mosquitto.port, pidFile: join(secure.mosquitto.configDir, 'mosquitto.pid'),
            ...(secure.mosquitto.user ? { user: secure.mosquitto.user } : {}),
          },
        }
        : external
        ? { mode: 'external', url: external.url, relayPassword: this.relayPassword }
        : {
          mode: 'embedded', host: '127.0.0.1', port: this.options.brokerPort ?? 0, relayPassword: this.relayPassword,
          // The demo's gateway logs in with a password: the plaintext listener, on 127.0.0.1 only (off by default).
          ...(secure ? { passwordListener: false, tls: { port: this.#securePorts?.mqtts ?? 0, wsPort: this.#securePorts?.wss ?? 0, ...splitHosts(['localhost', '127.0.0.1', '::1', ...(secure.publicHosts ?? [])]) } } : { passwordListener: true }),
        },
      ...(secure ? {
        enrollment: { brokerUrls: secure.brokerUrls ?? this.#advertisedBrokerUrls(), publicHostnames: ['localhost', '127.0.0.1', ...(secure.publicHosts ?? [])], failedAttemptsPerWindow: 1000 },
      } : {}),
      database: { ...(this.options.databaseUrl ? { url: this.options.databaseUrl } : {}), pgliteDir: join(this.options.dataDir, 'relay-db') },
      graph: { authorityHost: this.graph.url, graphBaseUrl: this.graph.url, caFile: this.#caFile },
      tenants: [{
        id: 'contoso',
        name: 'Contoso',
        graph: { tenantId: this.graph.tenantId, clientId: this.graphClient.clientId, clientSecret: this.graphClient.clientSecret },
        // Secure: the gateway is created through enrollment (enrollGateway), not listed with a password.
        gateways: secure ? [] : [{ id: this.gatewayId, name: 'Head office', password: this.gatewayPassword }],
      }],
      sync: { pollIntervalMs: 1000, ...this.options.sync },
      http: secure ? { host: '127.0.0.1', port: this.#securePorts?.https ?? 0, tls: { selfIssued: true } } : { port: 0 },
    })
  }

  gatewayConfig(): Readonly<LoadedGatewayConfig> {
    const config = parseGatewayConfig({
      gatewayId: this.gatewayId,
      relay: this.options.secure
        ? { url: this.#advertisedBrokerUrls()[0] ?? 'mqtts://127.0.0.1:8883', ...(this.#enrollUrl ? { enrollUrl: this.#enrollUrl, caFingerprint: this.#caPin } : {}) }
        : { url: this.#brokerUrl, username: this.gatewayId, password: this.gatewayPassword },
      dataDir: join(this.options.dataDir, 'gateway'),
      logLevel: this.options.serviceLogLevel ?? this.options.logger.level,
      connectors: [{
        id: 'osbiz-main',
        type: 'osbiz',
        host: '127.0.0.1',
        port: this.pbx.port,
        applicationId: 'presence-gateway',
        username: 'cstauser',
        password: 'csta-secret',
        users: this.people.map((p) => ({ extension: p.extension, name: p.name, email: p.email })),
      }, ...(this.branchPbx && this.options.branchPeople ? [{
        id: 'osbiz-branch',
        type: 'osbiz',
        host: '127.0.0.1',
        port: this.branchPbx.port,
        applicationId: 'presence-gateway',
        username: 'cstauser',
        password: 'csta-secret',
        users: this.options.branchPeople.map((p) => ({ extension: p.extension, name: p.name, email: p.email })),
      }] : [])],
    }, adapterRegistry)
    return this.options.gatewayOverrides ? Object.freeze({ ...config, ...this.options.gatewayOverrides }) : config
  }

  /** The broker URL known before the relay starts: an external broker, or a fixed embedded port. */
  #plannedBrokerUrl(): string {
    const external = this.options.broker !== undefined && this.options.broker !== 'embedded' ? this.options.broker : undefined
    if (external) return external.url
    return this.options.brokerPort ? `mqtt://127.0.0.1:${this.options.brokerPort}` : ''
  }

  #advertisedBrokerUrls(): string[] {
    const secure = this.options.secure
    if (!secure) return []
    if (secure.brokerUrls) return [...secure.brokerUrls]
    if (secure.mosquitto) return [`mqtts://127.0.0.1:${secure.mosquitto.port}`]
    const mqtts = this.#securePorts?.mqtts ?? secure.mqttsPort
    const wss = this.#securePorts?.wss ?? secure.wssPort
    return [...(mqtts ? [`mqtts://127.0.0.1:${mqtts}`] : []), ...(wss ? [`wss://127.0.0.1:${wss}/mqtt`] : [])]
  }

  /** The relay's https address for enrollment (secure mode, once the relay listens). */
  get enrollUrl(): string {
    return this.#enrollUrl
  }

  /**
   * Secure mode: creates the gateway on the relay (once) and enrolls the box with the one-time code over HTTPS,
   * pinning the relay's CA as an installer would with the pin from the console. Idempotent while the box holds
   * an identity.
   */
  async enrollGateway(): Promise<{ code: string } | undefined> {
    const relay = this.relay
    if (!this.options.secure || !relay) throw new Error('enrollGateway needs options.secure and a started relay')
    const dataDir = join(this.options.dataDir, 'gateway')
    if (await loadUplinkIdentity(dataDir)) return undefined
    const existing = await relay.enrollment.getGateway(this.gatewayId)
    const issued = existing
      ? await relay.enrollment.newCode(this.gatewayId)
      : await relay.enrollment.createGateway('contoso', { id: this.gatewayId, name: 'Head office' })
    const store = new IdentityStore(dataDir)
    const client = new EnrollmentClient({ store, clock: systemClock, logger: this.options.logger.child({ component: 'enrollment' }) }, {
      relayUrl: this.#enrollUrl, caFingerprint: this.#caPin,
    })
    await client.enroll({ code: issued.code })
    return { code: issued.code }
  }

  async startRelay(): Promise<Relay> {
    const secure = this.options.secure
    if (secure) {
      // Fixed ports: the relay tells enrolled boxes its broker URLs, so they must be known before it starts.
      this.#securePorts ??= {
        mqtts: secure.mqttsPort || await freePort(),
        wss: secure.wssPort || await freePort(),
        https: secure.httpsPort || await freePort(),
      }
    }
    const config = this.relayConfig()
    const relay = new Relay(config, {
      logger: this.options.logger,
      clock: systemClock,
      counters: this.relayCounters,
      graphCaPem: this.graph.caPem,
      ...(this.options.consoleDir ? { consoleDir: this.options.consoleDir } : {}),
      databaseUrl: this.options.databaseUrl,
    })
    await relay.start()
    this.relay = relay
    const external = this.options.broker !== undefined && this.options.broker !== 'embedded' ? this.options.broker : undefined
    this.#brokerUrl = external ? external.url : `mqtt://127.0.0.1:${relay.brokerPort}`
    if (this.options.secure) {
      this.#enrollUrl = `https://127.0.0.1:${relay.httpPort}`
      this.#caPin = relay.pki.caFingerprint256
    }
    return relay
  }

  async stopRelay(): Promise<void> {
    await this.relay?.stop()
    this.relay = undefined
  }

  async startGateway(): Promise<Gateway> {
    if (this.options.secure) await this.enrollGateway()
    const gateway = new Gateway(this.gatewayConfig(), {
      logger: this.options.logger,
      clock: systemClock,
      counters: this.gatewayCounters,
      registry: adapterRegistry,
    })
    await gateway.start()
    this.gateway = gateway
    return gateway
  }

  async stopGateway(reason = 'shutdown'): Promise<void> {
    await this.gateway?.stop(reason)
    this.gateway = undefined
  }

  async stop(): Promise<void> {
    await this.stopGateway()
    await this.stopRelay()
    await this.pbx?.stop()
    await this.branchPbx?.stop()
    await this.graph?.stop()
  }

  /** Writes both services' config files, for running them as separate processes (needs a fixed brokerPort). */
  async writeConfigFiles(): Promise<{ relay: string; gateway: string }> {
    if (!this.#plannedBrokerUrl()) throw new Error('writeConfigFiles needs options.brokerPort or an external broker')
    const relayFile = join(this.options.dataDir, 'relay.json')
    const gatewayFile = join(this.options.dataDir, 'gateway.json')
    await writeFile(relayFile, JSON.stringify(this.relayConfig(), null, 2))
    await writeFile(gatewayFile, JSON.stringify(this.gatewayConfig(), null, 2))
    return { relay: relayFile, gateway: gatewayFile }
  }

  person(emailOrExtension: string): DemoPerson {
    const person = this.people.find((p) => p.email === emailOrExtension || p.extension === emailOrExtension || p.name.toLowerCase().startsWith(emailOrExtension.toLowerCase()))
    if (!person) throw new Error(`no demo person ${emailOrExtension}`)
    return person
  }
}

/** Names and IP addresses for a certificate's subjectAltName, which keeps them apart. */
function splitHosts(hosts: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } {
  return { dnsNames: hosts.filter((h) => isIP(h) === 0), ipAddresses: hosts.filter((h) => isIP(h) !== 0) }
}

/**
 * A loopback port nothing listens on right now, drawn below the kernel's ephemeral range so that another
 * process's listen(0) or outgoing connection does not take it before the relay binds it.
 */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
    })
    if (free) return port
  }
  throw new Error('no free port between 20000 and 32000 on 127.0.0.1 after 50 tries')
}
