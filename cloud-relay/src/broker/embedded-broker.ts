import { createServer, type Server } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import type { Logger } from 'pino'
import { MAX_PAYLOAD_BYTES } from '../../../gateway/protocol/version.js'
import { TOPIC_PREFIX } from '../../../gateway/protocol/topics.js'
import type { Counters } from '../../../gateway/src/core/counters.js'

export interface BrokerAuth {
  /** The relay's own client: may publish commands and read everything. */
  relayUsername: string
  relayPassword: string
  /** Checks a gateway's credentials; the username is the gateway id. */
  verifyGateway(gatewayId: string, password: string): boolean
}

/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1). Authentication per gateway; ACL per DESIGN §4: a gateway
 * publishes only under its own topic root and never on `cmd/`, and subscribes only to its own `cmd/#`.
 */
export class EmbeddedBroker {
  readonly #options: { host: string; port: number }
  readonly #auth: BrokerAuth
  readonly #log: Logger
  readonly #counters: Counters
  #aedes: Aedes | undefined
  #server: Server | undefined

  constructor(options: { host: string; port: number }, auth: BrokerAuth, deps: { logger: Logger; counters: Counters }) {
    this.#options = options
    this.#auth = auth
    this.#log = deps.logger
    this.#counters = deps.counters
  }

  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? this.#options.port
  }

  async start(): Promise<void> {
    if (this.#aedes) return
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => this.#authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => {
        if (!client) return done(null) // the broker's own messages (e.g. a last will being delivered)
        if (packet.payload && Buffer.byteLength(packet.payload) > MAX_PAYLOAD_BYTES) {
          this.#deny('publish', client, packet.topic, 'payload too large')
          return done(new Error('payload too large'))
        }
        if (this.#isRelay(client)) return done(null)
        const root = `${TOPIC_PREFIX}/${client.id}/`
        if (!packet.topic.startsWith(root) || packet.topic.startsWith(`${root}cmd/`)) {
          this.#deny('publish', client, packet.topic, 'outside its own topic root')
          return done(new Error('not authorized'))
        }
        done(null)
      },
      authorizeSubscribe: (client, subscription, done) => {
        if (this.#isRelay(client)) return done(null, subscription)
        if (subscription.topic !== `${TOPIC_PREFIX}/${client.id}/cmd/#`) {
          this.#deny('subscribe', client, subscription.topic, 'only its own cmd/# is allowed')
          // A null subscription answers SUBACK 0x80 (failure) and keeps the connection, as MQTT 3.1.1 intends.
          return done(null, null)
        }
        done(null, subscription)
      },
    })
    aedes.on('clientError', (client, err) => this.#log.debug({ client: client.id, err: err.message }, 'mqtt client error'))
    aedes.on('connectionError', (_client, err) => this.#log.debug({ err: err.message }, 'mqtt connection error'))
    this.#aedes = aedes
    const server = createServer(aedes.handle)
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#options.port, this.#options.host, () => resolve())
    })
    this.#log.info({ host: this.#options.host, port: this.port }, 'embedded MQTT broker listening')
  }

  async stop(): Promise<void> {
    const aedes = this.#aedes
    const server = this.#server
    this.#aedes = undefined
    this.#server = undefined
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()))
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  #isRelay(client: Client): boolean {
    return (client as Client & { relay?: boolean }).relay === true
  }

  #authenticate(client: Client, username: string | undefined, password: Buffer | undefined, done: (error: AuthenticateError | null, success: boolean | null) => void): void {
    const secret = password?.toString('utf8') ?? ''
    if (username === this.#auth.relayUsername && secret === this.#auth.relayPassword) {
      ;(client as Client & { relay?: boolean }).relay = true
      return done(null, true)
    }
    // A gateway's MQTT client id must be its gateway id: the id in its topics is its authenticated identity.
    if (username && username === client.id && this.#auth.verifyGateway(username, secret)) return done(null, true)
    this.#counters.inc('broker.auth_rejected')
    this.#log.warn({ client: client.id, username }, 'broker refused a client: wrong credentials or client id differs from the gateway id')
    const error = new Error('bad username or password') as AuthenticateError
    error.returnCode = 4
    done(error, false)
  }

  #deny(action: string, client: Client, topic: string, why: string): void {
    this.#counters.inc(`broker.${action}_denied`)
    this.#log.warn({ client: client.id, topic: topic.slice(0, 200), why }, `broker denied a ${action}`)
  }
}
