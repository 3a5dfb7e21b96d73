import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import type { Duplex } from 'node:stream'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import type { Logger } from 'pino'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { MAX_PAYLOAD_BYTES } from '#protocol/version.js'
import { TOPIC_PREFIX } from '#protocol/topics.js'
import { systemClock, type Clock } from '#kernel/clock.js'
import type { Counters } from '#kernel/counters.js'
import { LoginThrottle } from './login-throttle.js'
import { guardPacketSize } from './packet-size-guard.js'
import { peerIdentityOf, type AuthorizeCertificate, type AuthorizeRelayCertificate, type PeerIdentity } from './peer-identity.js'
import { RetainedLedger } from './retain-policy.js'
import { sameSecret } from './secrets.js'

export type { AuthorizeCertificate, AuthorizeRelayCertificate, CertificateDecision, CertificateIdentity } from './peer-identity.js'

/** Failed password logins per client address before it must wait (10 minutes window). */
const LOGIN_FAILURES = 10
const LOGIN_WINDOW_MS = 10 * 60_000
/** Room for a topic and the header beyond the payload cap, as Mosquitto's max_packet_size. */
const PACKET_OVERHEAD = 64 * 1024

export interface BrokerAuth {
  /** The relay's own client on the password listener: may publish commands and read everything. */
  relayUsername?: string | undefined
  relayPassword?: string | undefined
  /** Checks a gateway's password (password listener); the username is the gateway id. Asynchronous: scrypt runs off the event loop. */
  verifyGateway?: ((gatewayId: string, password: string) => boolean | Promise<boolean>) | undefined
  /**
   * Decides on a gateway's verified client certificate (mutual-TLS listeners): known, enrolled, not revoked,
   * serial current. Without it every certificate gateway is refused.
   */
  authorizeCertificate?: AuthorizeCertificate | undefined
  /**
   * Decides on a relay certificate (CN `relay:<name>`, full access): the current one for its name, not revoked
   * (RelayCertificates.decide). Without it every relay certificate is refused.
   */
  authorizeRelayCertificate?: AuthorizeRelayCertificate | undefined
}

/** The plaintext password listener: loopback only unless allowRemote says otherwise (and the log warns). */
export interface PasswordListenerOptions {
  /** Default 127.0.0.1. */
  host?: string | undefined
  /** Needed for any address that is not loopback: passwords would cross the network in clear text. */
  allowRemote?: boolean | undefined
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
  /** Address of the mutual-TLS listeners. */
  host: string
  /** The password listener's port (plain MQTT). */
  port: number
  /** The plaintext password listener (older gateways, tests, the demo). Default off; `true` is 127.0.0.1. */
  passwordListener?: boolean | PasswordListenerOptions | undefined
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
  readonly #retained = new RetainedLedger()
  readonly #throttle: LoginThrottle
  #aedes: Aedes | undefined
  #server: Server | undefined
  #tlsServer: TlsServer | undefined
  #httpsServer: HttpsServer | undefined
  #wss: WebSocketServer | undefined

  constructor(options: EmbeddedBrokerOptions, auth: BrokerAuth, deps: { logger: Logger; counters: Counters; clock?: Clock | undefined }) {
    this.#options = options
    this.#auth = auth
    this.#log = deps.logger
    this.#counters = deps.counters
    const clock = deps.clock ?? systemClock
    this.#throttle = new LoginThrottle({ limit: LOGIN_FAILURES, windowMs: LOGIN_WINDOW_MS, maxAddresses: 10_000 }, () => clock.now())
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
        if (packet.retain) this.#checkRetain(client, packet)
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
    const maxPacket = maxPayload + PACKET_OVERHEAD
    const guarded = (stream: Duplex, transport: string, remote: string | undefined): Duplex => guardPacketSize(stream, maxPacket, (announced) => {
      this.#counters.inc('broker.packet_too_large')
      this.#log.warn({ transport, remote, announcedBytes: announced, limitBytes: maxPacket }, 'broker closed a connection: the packet announced is too large')
    })

    const password = passwordListenerOptions(this.#options.passwordListener)
    if (password) {
      const passwordHost = password.host ?? '127.0.0.1'
      if (!isLoopback(passwordHost)) {
        if (password.allowRemote !== true) {
          throw new Error(`broker.passwordListener.host ${passwordHost} is not a loopback address: the password listener speaks plain MQTT, so passwords would cross the network in clear text. Use 127.0.0.1 (gateways with certificates use the mTLS listeners), or set broker.passwordListener.allowRemote: true if you accept that.`)
        }
        this.#log.warn({ host: passwordHost }, 'the plaintext password listener is on an address that is not loopback (allowRemote): passwords cross the network in clear text')
      }
      // noDelay on every listener: aedes writes a PUBACK in pieces, and with Nagle the second piece waited for the
      // client's delayed ACK, about 40 ms per QoS 1 message.
      const server = createServer({ noDelay: true }, (socket) => {
        const stream = guarded(socket, 'password', socket.remoteAddress)
        this.#peers.set(stream, { kind: 'password', remote: socket.remoteAddress ?? 'unknown' })
        aedes.handle(stream)
      })
      this.#server = server
      await listen(server, this.#options.port, passwordHost)
      this.#log.info({ host: passwordHost, port: this.port }, 'embedded MQTT broker listening (password listener, plain MQTT)')
    }

    const tls = this.#options.tls
    if (tls) {
      // rejectUnauthorized is false on purpose: with true, Node under TLS 1.3 reports a refused client certificate
      // to the server only as "socket hang up", so nobody could tell an expired certificate from a foreign CA.
      // Every socket is checked right after the handshake instead and destroyed before a single MQTT byte is read.
      const secure = { requestCert: true, rejectUnauthorized: false, ca: tls.caPem, cert: tls.certPem, key: tls.keyPem, minVersion: 'TLSv1.2' as const }
      const tlsServer = createTlsServer(secure, (socket) => {
        if (!this.#verified('mqtts', socket)) return
        const stream = guarded(socket, 'mqtts', socket.remoteAddress)
        this.#peers.set(stream, peerIdentityOf(socket, 'mqtts'))
        aedes.handle(stream)
      })
      tlsServer.on('connection', (socket: Socket) => socket.setNoDelay(true))
      tlsServer.on('tlsClientError', (err, socket) => this.#tlsRefused('mqtts', err, socket))
      this.#tlsServer = tlsServer
      await listen(tlsServer, tls.port, host)
      this.#log.info({ host, port: this.tlsPort }, 'embedded MQTT broker listening (mqtts, client certificate required)')

      if (tls.wsPort !== undefined) {
        const httpsServer = createHttpsServer(secure, (_req, res) => {
          res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only, at /mqtt\n')
        })
        httpsServer.on('connection', (socket: Socket) => socket.setNoDelay(true))
        httpsServer.on('tlsClientError', (err, socket) => this.#tlsRefused('wss', err, socket))
        // First listener: an unverified socket is gone before the HTTP parser sees a byte.
        httpsServer.prependListener('secureConnection', (socket: TLSSocket) => {
          this.#verified('wss', socket)
        })
        const wss = new WebSocketServer({ server: httpsServer, path: '/mqtt', maxPayload: maxPayload + 64 * 1024 })
        wss.on('connection', (ws, req) => {
          const wsStream: Duplex = createWebSocketStream(ws)
          wsStream.on('error', () => undefined) // aedes logs the client error; a reset socket must not crash us
          // The frame limit alone does not bound an MQTT packet split over many frames.
          const stream = guarded(wsStream, 'wss', req.socket.remoteAddress)
          stream.on('error', () => undefined)
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
      const attempt = this.#throttle.begin(peer.remote)
      if (!attempt) {
        return this.#refuse(client, username, 'throttled', `too many failed logins from ${peer.remote}: try again in ${this.#throttle.retryAfterSeconds(peer.remote)} s`, 4, undefined, undefined, peer.remote)
      }
      let ok = false
      try {
        const secret = password?.toString('utf8') ?? ''
        const auth = this.#auth
        if (auth.relayUsername !== undefined && auth.relayPassword !== undefined && username === auth.relayUsername && sameSecret(secret, auth.relayPassword)) {
          this.#state.set(client, { relay: true, transport: 'password' })
          ok = true
          return true
        }
        // A gateway's MQTT client id must be its gateway id: the id in its topics is its authenticated identity.
        if (username && username === client.id && (await auth.verifyGateway?.(username, secret)) === true) {
          this.#state.set(client, { gatewayId: username, transport: 'password' })
          ok = true
          return true
        }
        return this.#refuse(client, username, 'password', 'wrong credentials or client id differs from the gateway id', 4, undefined, undefined, peer.remote)
      } finally {
        attempt.end(ok)
      }
    }
    if (peer.kind === 'bad-certificate') return this.#refuse(client, username, 'certificate', peer.reason, 5)
    if (peer.kind === 'relay-certificate') {
      // The client id is the certificate's CN, as for gateways: one relay certificate cannot take over another's session.
      if (client.id !== peer.commonName) {
        return this.#refuse(client, username, 'identity_mismatch', `a relay certificate connects with its CN ${peer.commonName} as client id`, 5, undefined, peer.serial)
      }
      const decide = this.#auth.authorizeRelayCertificate
      const decision = decide ? await decide({ commonName: peer.commonName, serial: peer.serial }) : { ok: false as const, reason: 'this broker has no relay certificate authorizer configured' }
      if (!decision.ok) return this.#refuse(client, username, 'relay_certificate_refused', decision.reason, 5, undefined, peer.serial)
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

  #refuse(client: Client, username: string | undefined, counter: string, why: string, returnCode: number, gatewayId?: string, serial?: string, remote?: string): { returnCode: number; message: string } {
    this.#counters.inc('broker.auth_rejected')
    this.#counters.inc(`broker.auth_rejected.${counter}`)
    this.#log.warn({ client: client.id.slice(0, 100), username: username?.slice(0, 100), gatewayId, serial, remote, why }, 'broker refused a client')
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

  /** A gateway's retained publish: kept only where the retain policy allows, otherwise delivered but not kept. */
  #checkRetain(client: Client, packet: { topic: string; payload?: Buffer | string; retain: boolean }): void {
    const bytes = packet.payload === undefined ? 0 : Buffer.byteLength(packet.payload)
    if (bytes === 0) {
      this.#retained.cleared(packet.topic)
      return
    }
    const verdict = this.#retained.admit(client.id, packet.topic, bytes)
    if (verdict.ok) return
    packet.retain = false
    this.#counters.inc('broker.retain_denied')
    this.#counters.inc(`broker.retain_denied.${verdict.reason}`)
    this.#log.warn({ client: client.id.slice(0, 100), topic: packet.topic.slice(0, 200), bytes, why: verdict.why }, 'broker did not retain a message')
  }

  #deny(action: string, client: Client, topic: string, why: string, reason: string): void {
    this.#counters.inc(`broker.${action}_denied`)
    this.#counters.inc(`broker.${action}_denied.${reason}`)
    this.#log.warn({ client: client.id.slice(0, 100), topic: topic.slice(0, 200), why }, `broker denied a ${action}`)
  }
}

function passwordListenerOptions(value: boolean | PasswordListenerOptions | undefined): PasswordListenerOptions | undefined {
  if (value === undefined || value === false) return undefined
  return value === true ? {} : value
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./.test(host)
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
