import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { createServer, type AddressInfo, type Server } from 'node:net'
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import type { Logger } from 'pino'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { MAX_PAYLOAD_BYTES } from '../../../gateway/protocol/version.js'
import { TOPIC_PREFIX } from '../../../gateway/protocol/topics.js'
import type { Counters } from '../../../gateway/src/core/counters.js'
import { peerIdentityOf, type AuthorizeCertificate, type PeerIdentity } from './peer-identity.js'

export type { AuthorizeCertificate, CertificateDecision, CertificateIdentity } from './peer-identity.js'

export interface BrokerAuth {
  /** The relay's own client on the password listener: may publish commands and read everything. */
  relayUsername?: string | undefined
  relayPassword?: string | undefined
  /** Checks a gateway's password (password listener); the username is the gateway id. */
  verifyGateway?: ((gatewayId: string, password: string) => boolean) | undefined
  /**
   * Decides on a gateway's verified client certificate (mutual-TLS listeners): known, enrolled, not revoked,
   * serial current. Without it every certificate gateway is refused.
   */
  authorizeCertificate?: AuthorizeCertificate | undefined
}

export interface BrokerTlsOptions {
  /** mqtts port (8883 by default in the config; 0 = any free port). */
  port: number
  /** MQTT over WebSocket with TLS, path `/mqtt` (443 in production, for sites that allow only HTTPS out); undefined: off. */
  wsPort?: number | undefined
  /** The relay CA (PEM): client certificates must chain to it. */
  caPem: string
  /** The broker's server certificate and key (PEM). */
  certPem: string
  keyPem: string
}

export interface EmbeddedBrokerOptions {
  host: string
  /** The password listener's port (plain MQTT). */
  port: number
  /** Keep the password listener (existing deployments, tests). Default true. */
  passwordListener?: boolean | undefined
  /** The mutual-TLS listeners. */
  tls?: BrokerTlsOptions | undefined
  /** Largest publish payload accepted; default MAX_PAYLOAD_BYTES. */
  maxPayloadBytes?: number | undefined
}

interface ClientState {
  relay?: boolean
  gatewayId?: string
  tenantId?: string
  transport?: string
}

/**
 * The embedded MQTT broker (aedes, MQTT 3.1.1). Listeners: mqtts and wss with a required client certificate
 * from the relay CA (the certificate's CN is the gateway id), and optionally the older password listener.
 * ACL per DESIGN §4: a gateway publishes only under its own topic root and never on `cmd/`, and subscribes
 * only to its own `cmd/`. Every refusal is logged (warn) and counted under `broker.*`.
 */
export class EmbeddedBroker {
  readonly #options: EmbeddedBrokerOptions
  readonly #auth: BrokerAuth
  readonly #log: Logger
  readonly #counters: Counters
  /** Who is at the other end of each connection, read from its TLS handshake. */
  readonly #peers = new WeakMap<object, PeerIdentity>()
  readonly #state = new WeakMap<Client, ClientState>()
  /** Connected gateways by id, for disconnectGateway. */
  readonly #gateways = new Map<string, Client>()
  #aedes: Aedes | undefined
  #server: Server | undefined
  #tlsServer: TlsServer | undefined
  #httpsServer: HttpsServer | undefined
  #wss: WebSocketServer | undefined

  constructor(options: EmbeddedBrokerOptions, auth: BrokerAuth, deps: { logger: Logger; counters: Counters }) {
    this.#options = options
    this.#auth = auth
    this.#log = deps.logger
    this.#counters = deps.counters
  }

  /** The password listener's port. */
  get port(): number {
    return (this.#server?.address() as AddressInfo | null)?.port ?? this.#options.port
  }

  get tlsPort(): number | undefined {
    return (this.#tlsServer?.address() as AddressInfo | null)?.port ?? this.#options.tls?.port
  }

  get wsPort(): number | undefined {
    return (this.#httpsServer?.address() as AddressInfo | null)?.port ?? this.#options.tls?.wsPort
  }

  /** Gateways connected right now. */
  connectedGateways(): string[] {
    return [...this.#gateways.keys()]
  }

  async start(): Promise<void> {
    if (this.#aedes) return
    const maxPayload = this.#options.maxPayloadBytes ?? MAX_PAYLOAD_BYTES
    const aedes = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        this.#authenticate(client, username, password).then((ok) => {
          if (ok === true) return done(null, true)
          const error = new Error(ok.message) as AuthenticateError
          error.returnCode = ok.returnCode
          done(error, false)
        }, (err: unknown) => {
          this.#log.error({ client: client.id, err: (err as Error).message }, 'broker authentication failed with an error; refusing the client')
          const error = new Error('server unavailable') as AuthenticateError
          error.returnCode = 3
          done(error, false)
        })
      },
      authorizePublish: (client, packet, done) => {
        if (!client) return done(null) // the broker's own messages (e.g. a last will being delivered)
        if (packet.payload && Buffer.byteLength(packet.payload) > maxPayload) {
          this.#deny('publish', client, packet.topic, `payload of ${Buffer.byteLength(packet.payload)} bytes exceeds ${maxPayload}`, 'payload_too_large')
          return done(new Error('payload too large'))
        }
        if (this.#isRelay(client)) return done(null)
        const root = `${TOPIC_PREFIX}/${client.id}/`
        if (!packet.topic.startsWith(root)) {
          this.#deny('publish', client, packet.topic, 'outside its own topic root', 'foreign_root')
          return done(new Error('not authorized'))
        }
        if (packet.topic.startsWith(`${root}cmd/`)) {
          this.#deny('publish', client, packet.topic, 'a gateway may not publish commands', 'command')
          return done(new Error('not authorized'))
        }
        done(null)
      },
      authorizeSubscribe: (client, subscription, done) => {
        if (this.#isRelay(client)) return done(null, subscription)
        // Anything below its own cmd/ stays there: a + or # after that prefix cannot reach another root.
        if (!subscription.topic.startsWith(`${TOPIC_PREFIX}/${client.id}/cmd/`)) {
          this.#deny('subscribe', client, subscription.topic, 'only its own cmd/# is allowed', 'foreign_filter')
          // A null subscription answers SUBACK 0x80 (failure) and keeps the connection, as MQTT 3.1.1 intends.
          return done(null, null)
        }
        done(null, subscription)
      },
    })
    aedes.on('client', (client) => {
      const state = this.#state.get(client)
      if (state?.gatewayId === undefined) return
      const previous = this.#gateways.get(state.gatewayId)
      if (previous && previous !== client) previous.close()
      this.#gateways.set(state.gatewayId, client)
      this.#counters.inc('broker.gateway_connects')
      this.#log.info({ gatewayId: state.gatewayId, tenantId: state.tenantId, transport: state.transport }, 'gateway connected to the broker')
    })
    aedes.on('clientDisconnect', (client) => {
      const state = this.#state.get(client)
      if (state?.gatewayId !== undefined && this.#gateways.get(state.gatewayId) === client) this.#gateways.delete(state.gatewayId)
    })
    aedes.on('clientError', (client, err) => this.#log.debug({ client: client.id, err: err.message }, 'mqtt client error'))
    aedes.on('connectionError', (_client, err) => this.#log.debug({ err: err.message }, 'mqtt connection error'))
    this.#aedes = aedes
    const host = this.#options.host

    if (this.#options.passwordListener !== false) {
      const server = createServer((socket) => {
        this.#peers.set(socket, { kind: 'password' })
        aedes.handle(socket)
      })
      this.#server = server
      await listen(server, this.#options.port, host)
      this.#log.info({ host, port: this.port }, 'embedded MQTT broker listening (password listener)')
    }

    const tls = this.#options.tls
    if (tls) {
      // rejectUnauthorized is false on purpose: with true, Node under TLS 1.3 reports a refused client certificate
      // to the server only as "socket hang up", so nobody could tell an expired certificate from a foreign CA.
      // Every socket is checked right after the handshake instead and destroyed before a single MQTT byte is read.
      const secure = { requestCert: true, rejectUnauthorized: false, ca: tls.caPem, cert: tls.certPem, key: tls.keyPem, minVersion: 'TLSv1.2' as const }
      const tlsServer = createTlsServer(secure, (socket) => {
        if (!this.#verified('mqtts', socket)) return
        this.#peers.set(socket, peerIdentityOf(socket, 'mqtts'))
        aedes.handle(socket)
      })
      tlsServer.on('tlsClientError', (err, socket) => this.#tlsRefused('mqtts', err, socket))
      this.#tlsServer = tlsServer
      await listen(tlsServer, tls.port, host)
      this.#log.info({ host, port: this.tlsPort }, 'embedded MQTT broker listening (mqtts, client certificate required)')

      if (tls.wsPort !== undefined) {
        const httpsServer = createHttpsServer(secure, (_req, res) => {
          res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only, at /mqtt\n')
        })
        httpsServer.on('tlsClientError', (err, socket) => this.#tlsRefused('wss', err, socket))
        // First listener: an unverified socket is gone before the HTTP parser sees a byte.
        httpsServer.prependListener('secureConnection', (socket: TLSSocket) => {
          this.#verified('wss', socket)
        })
        const wss = new WebSocketServer({ server: httpsServer, path: '/mqtt', maxPayload: maxPayload + 64 * 1024 })
        wss.on('connection', (ws, req) => {
          const stream: Duplex = createWebSocketStream(ws)
          stream.on('error', () => undefined) // aedes logs the client error; a reset socket must not crash us
          this.#peers.set(stream, peerIdentityOf(req.socket as TLSSocket, 'wss'))
          aedes.handle(stream, req)
        })
        this.#httpsServer = httpsServer
        this.#wss = wss
        await listen(httpsServer, tls.wsPort, host)
        this.#log.info({ host, port: this.wsPort, path: '/mqtt' }, 'embedded MQTT broker listening (wss, client certificate required)')
      }
    }
  }

  async stop(): Promise<void> {
    const aedes = this.#aedes
    const servers = [this.#server, this.#tlsServer, this.#httpsServer]
    const wss = this.#wss
    this.#aedes = undefined
    this.#server = undefined
    this.#tlsServer = undefined
    this.#httpsServer = undefined
    this.#wss = undefined
    this.#gateways.clear()
    if (wss) for (const ws of wss.clients) ws.terminate()
    if (aedes) await new Promise<void>((resolve) => aedes.close(() => resolve()))
    if (wss) await new Promise<void>((resolve) => wss.close(() => resolve()))
    for (const server of servers) {
      if (!server) continue
      ;(server as HttpsServer).closeAllConnections?.()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }

  /**
   * Cuts a gateway's connection at once (revocation). Its last will is published, so the relay sees it go
   * offline. Whether it may come back is `authorizeCertificate`'s answer at its next connect.
   */
  disconnectGateway(gatewayId: string, reason: string): boolean {
    const client = this.#gateways.get(gatewayId)
    if (!client) return false
    this.#gateways.delete(gatewayId)
    this.#counters.inc('broker.gateway_disconnected')
    this.#log.warn({ gatewayId, reason }, 'broker cut a gateway\'s connection')
    client.close()
    return true
  }

  #isRelay(client: Client): boolean {
    return this.#state.get(client)?.relay === true
  }

  async #authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<true | { returnCode: number; message: string }> {
    const peer = this.#peers.get(client.conn)
    if (peer === undefined) return this.#refuse(client, username, 'unknown_transport', 'connection from an unknown listener', 3)
    if (peer.kind === 'password') {
      const secret = password?.toString('utf8') ?? ''
      const auth = this.#auth
      if (auth.relayUsername !== undefined && auth.relayPassword !== undefined && username === auth.relayUsername && secret === auth.relayPassword) {
        this.#state.set(client, { relay: true, transport: 'password' })
        return true
      }
      // A gateway's MQTT client id must be its gateway id: the id in its topics is its authenticated identity.
      if (username && username === client.id && auth.verifyGateway?.(username, secret) === true) {
        this.#state.set(client, { gatewayId: username, transport: 'password' })
        return true
      }
      return this.#refuse(client, username, 'password', 'wrong credentials or client id differs from the gateway id', 4)
    }
    if (peer.kind === 'bad-certificate') return this.#refuse(client, username, 'certificate', peer.reason, 5)
    if (peer.kind === 'relay-certificate') {
      this.#state.set(client, { relay: true, transport: peer.transport })
      this.#log.info({ client: client.id, relay: peer.commonName, transport: peer.transport }, 'relay client connected with its certificate')
      return true
    }
    const { identity } = peer
    if (client.id !== identity.gatewayId || username !== identity.gatewayId) {
      return this.#refuse(client, username, 'identity_mismatch', `client id and username must both equal the certificate's gateway id ${identity.gatewayId}`, 5, identity.gatewayId)
    }
    const authorize = this.#auth.authorizeCertificate
    const decision = authorize ? await authorize(identity) : { ok: false as const, reason: 'this broker has no certificate authorizer configured' }
    if (!decision.ok) return this.#refuse(client, username, 'certificate_refused', decision.reason, 5, identity.gatewayId, identity.serial)
    this.#state.set(client, { gatewayId: identity.gatewayId, tenantId: decision.tenantId, transport: peer.transport })
    return true
  }

  #refuse(client: Client, username: string | undefined, counter: string, why: string, returnCode: number, gatewayId?: string, serial?: string): { returnCode: number; message: string } {
    this.#counters.inc('broker.auth_rejected')
    this.#counters.inc(`broker.auth_rejected.${counter}`)
    this.#log.warn({ client: client.id.slice(0, 100), username: username?.slice(0, 100), gatewayId, serial, why }, 'broker refused a client')
    return { returnCode, message: why }
  }

  /** The client certificate chains to the relay CA and is within its validity; otherwise the socket is destroyed. */
  #verified(transport: 'mqtts' | 'wss', socket: TLSSocket): boolean {
    if (socket.authorized) return true
    const cert = socket.getPeerCertificate()
    const presented = cert && Object.keys(cert).length > 0
    const code = presented ? String(socket.authorizationError ?? 'UNVERIFIED') : 'NO_CERTIFICATE'
    this.#counters.inc('broker.tls_rejected')
    this.#counters.inc(`broker.tls_rejected.${code}`)
    this.#log.warn({
      transport,
      remote: socket.remoteAddress,
      code,
      commonName: presented ? String(cert.subject?.CN ?? '').slice(0, 100) : undefined,
      serial: presented ? cert.serialNumber?.toLowerCase() : undefined,
      validTo: presented ? cert.valid_to : undefined,
    }, 'broker refused a client certificate: it must be issued by the relay CA and valid now (renew or re-enroll the gateway; check the box\'s clock)')
    socket.destroy()
    return false
  }

  #tlsRefused(transport: 'mqtts' | 'wss', err: Error & { code?: string }, socket: TLSSocket): void {
    this.#counters.inc('broker.tls_rejected')
    this.#counters.inc(`broker.tls_rejected.${transport}`)
    this.#log.warn({ transport, remote: socket.remoteAddress, code: err.code, err: err.message }, 'broker refused a TLS handshake')
  }

  #deny(action: string, client: Client, topic: string, why: string, reason: string): void {
    this.#counters.inc(`broker.${action}_denied`)
    this.#counters.inc(`broker.${action}_denied.${reason}`)
    this.#log.warn({ client: client.id.slice(0, 100), topic: topic.slice(0, 200), why }, `broker denied a ${action}`)
  }
}

async function listen(server: Server | TlsServer | HttpsServer, port: number, host: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}
