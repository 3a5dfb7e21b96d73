import type { IncomingMessage, Server } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { WebSocketServer, type WebSocket } from 'ws'
import type { ConsoleAuth, ConsolePrincipal } from './console-auth.js'

export const LIVE_PATH = '/api/v1/live'

/** The wire format of /api/v1/live (server → browser only). */
export type LiveMessage =
  | { type: 'hello'; username: string }
  | { type: 'gateway'; gateway: { id: string; tenantId: string } & Record<string, unknown> }
  | { type: 'event'; event: { id: number; tenantId: string | null; personId: number | null } & Record<string, unknown> }

export interface ConsoleLiveDeps {
  auth: Pick<ConsoleAuth, 'authenticate' | 'validSessions'>
  /** Every gateway as the API shows it. */
  gateways(): ReadonlyArray<{ id: string; tenantId: string } & Record<string, unknown>>
  /** The newest event-log lines, newest first, as the API shows them. */
  latestEvents(limit: number): Promise<ReadonlyArray<{ id: number; tenantId: string | null; personId: number | null } & Record<string, unknown>>>
  logger: Logger
}

interface Client {
  socket: WebSocket
  principal: ConsolePrincipal
}

/**
 * Live updates for signed-in consoles over one WebSocket each: gateway liveness changes and new event-log lines,
 * filtered to what the account may see. The relay looks at both once a second (one query for all clients) and
 * sends only what changed. In the same pass it closes the sockets whose session has ended (expired, or its account
 * disabled or deleted); sign-out and account changes close them at once through closeSession / closeAccount.
 */
export class ConsoleLive {
  readonly #deps: ConsoleLiveDeps
  readonly #pollMs: number
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 1024 })
  readonly #clients = new Set<Client>()
  readonly #gatewayJson = new Map<string, string>()
  readonly #log: Logger
  #lastEventId = 0
  #timer: NodeJS.Timeout | undefined
  #server: Server | undefined
  #polling = false
  readonly #onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Nothing a client sends may end up as an unhandled rejection: that used to stop the relay.
    this.#upgrade(request, socket, head).catch((err: unknown) => {
      this.#log.warn({ err: (err as Error).message }, 'live socket handshake failed')
      if (!socket.destroyed) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n')
    })
  }

  constructor(options: { pollMs?: number }, deps: ConsoleLiveDeps) {
    this.#deps = deps
    this.#pollMs = options.pollMs ?? 1000
    this.#log = deps.logger.child({ component: 'console-live' })
  }

  /** Listens for upgrades on the relay's HTTP(S) server and starts watching. */
  async start(server: Server): Promise<void> {
    if (this.#timer) return
    this.#server = server
    server.on('upgrade', this.#onUpgrade)
    for (const g of this.#deps.gateways()) this.#gatewayJson.set(g.id, JSON.stringify(g))
    this.#lastEventId = (await this.#deps.latestEvents(1))[0]?.id ?? 0
    this.#timer = setInterval(() => { void this.#poll() }, this.#pollMs)
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer)
    this.#timer = undefined
    this.#server?.off('upgrade', this.#onUpgrade)
    this.#server = undefined
    for (const client of this.#clients) client.socket.close(1001, 'relay stopping')
    this.#clients.clear()
  }

  /** A signed-out session's sockets close at once. */
  closeSession(tokenHash: string): void {
    for (const client of this.#clients) {
      if (client.principal.tokenHash === tokenHash) {
        client.socket.close(4001, 'signed out')
        this.#clients.delete(client)
      }
    }
  }

  /** A signed-out, disabled or deleted account's sockets close at once (but the session that made the change). */
  closeAccount(accountId: number, exceptTokenHash?: string): void {
    for (const client of this.#clients) {
      if (client.principal.account.id === accountId && client.principal.tokenHash !== exceptTokenHash) {
        client.socket.close(4001, 'session ended')
        this.#clients.delete(client)
      }
    }
  }

  async #upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    socket.on('error', () => socket.destroy())
    const refuse = (status: number, text: string, why: string) => {
      this.#log.info({ status, why, address: request.socket.remoteAddress }, 'live socket refused')
      socket.end(`HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
    }
    const path = (request.url ?? '/').split('?')[0]
    if (path !== LIVE_PATH) return refuse(404, 'Not Found', 'not the live path')
    // Browsers send cookies on cross-site WebSocket handshakes only without SameSite=Strict; the Origin check is
    // the second lock against another site opening this socket with the admin's cookie.
    const origin = originHost(request.headers.origin)
    const host = request.headers.host
    if (!origin || !host || origin !== host) return refuse(403, 'Forbidden', 'Origin is not this relay')
    const principal = await this.#deps.auth.authenticate(request.headers.cookie)
    if (!principal) return refuse(401, 'Unauthorized', 'no valid console session')
    this.#wss.handleUpgrade(request, socket, head, (ws) => {
      const client: Client = { socket: ws, principal }
      this.#clients.add(client)
      ws.on('close', () => this.#clients.delete(client))
      ws.on('error', () => this.#clients.delete(client))
      ws.on('message', () => ws.close(1008, 'this socket only sends'))
      this.#send(client, { type: 'hello', username: principal.account.username })
    })
  }

  async #poll(): Promise<void> {
    if (this.#polling) return
    this.#polling = true
    try {
      const messages: LiveMessage[] = []
      for (const gateway of this.#deps.gateways()) {
        const json = JSON.stringify(gateway)
        if (this.#gatewayJson.get(gateway.id) !== json) {
          this.#gatewayJson.set(gateway.id, json)
          messages.push({ type: 'gateway', gateway })
        }
      }
      await this.#closeEnded()
      const events = (await this.#deps.latestEvents(200)).filter((e) => e.id > this.#lastEventId)
      for (const event of [...events].reverse()) messages.push({ type: 'event', event })
      const newest = events[0]
      if (newest) this.#lastEventId = newest.id
      if (messages.length === 0 || this.#clients.size === 0) return
      for (const client of this.#clients) for (const message of messages) if (this.#visible(client, message)) this.#send(client, message)
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'live update poll failed')
    } finally {
      this.#polling = false
    }
  }

  /** Closes the sockets whose session is no longer valid (one query for all). */
  async #closeEnded(): Promise<void> {
    if (this.#clients.size === 0) return
    const valid = await this.#deps.auth.validSessions([...new Set([...this.#clients].map((c) => c.principal.tokenHash))])
    for (const client of this.#clients) {
      if (!valid.has(client.principal.tokenHash)) {
        client.socket.close(4001, 'session ended')
        this.#clients.delete(client)
      }
    }
  }

  #visible(client: Client, message: LiveMessage): boolean {
    const { account } = client.principal
    if (account.role === 'operator') return true
    if (message.type === 'gateway') return message.gateway.tenantId === account.tenantId
    if (message.type === 'event') return message.event.tenantId === account.tenantId
    return true
  }

  #send(client: Client, message: LiveMessage): void {
    if (client.socket.readyState === client.socket.OPEN) client.socket.send(JSON.stringify(message))
  }
}

/** The host:port of an Origin header, or undefined when it is absent or not a URL (`null`, `//`). */
function originHost(origin: string | undefined): string | undefined {
  if (!origin) return undefined
  try {
    return new URL(origin).host || undefined
  } catch {
    return undefined
  }
}
