import { createServer, type IncomingMessage, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'

export interface ConnectProxyOptions {
  /** Require Basic auth with these credentials (407 otherwise). */
  auth?: { username: string; password: string }
  /** Targets ("host:port") the proxy refuses with 403. */
  deny?: (target: string) => boolean
}

/**
 * A minimal HTTP CONNECT proxy on 127.0.0.1, as found at sites that only let HTTPS out through a proxy. Records
 * every tunnel it opened and every request it refused.
 */
export class ConnectProxy {
  readonly #server: Server
  readonly #options: ConnectProxyOptions
  readonly #sockets = new Set<Socket>()
  /** Targets tunnelled, in order ("host:port"). */
  readonly tunnels: string[] = []
  /** Refusals: status and target. */
  readonly refused: Array<{ status: number; target: string }> = []

  private constructor(options: ConnectProxyOptions) {
    this.#options = options
    this.#server = createServer((_req, res) => {
      res.writeHead(405, { 'content-type': 'text/plain' }).end('only CONNECT is supported\n')
    })
    this.#server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => this.#tunnel(req, client, head))
  }

  static async start(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
    const proxy = new ConnectProxy(options)
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', () => resolve()))
    return proxy
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port
  }

  /** http://[user:pass@]127.0.0.1:port */
  url(credentials?: { username: string; password: string }): string {
    const auth = credentials ? `${encodeURIComponent(credentials.username)}:${encodeURIComponent(credentials.password)}@` : ''
    return `http://${auth}127.0.0.1:${this.port}`
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    this.#server.closeAllConnections()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #tunnel(req: IncomingMessage, client: Socket, head: Buffer): void {
    const target = req.url ?? ''
    client.on('error', () => undefined)
    const refuse = (status: number, text: string, extra = ''): void => {
      this.refused.push({ status, target })
      client.end(`HTTP/1.1 ${status} ${text}\r\n${extra}Content-Length: 0\r\n\r\n`)
    }
    const { auth, deny } = this.#options
    if (auth) {
      const expected = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`
      if (req.headers['proxy-authorization'] !== expected) {
        refuse(407, 'Proxy Authentication Required', 'Proxy-Authenticate: Basic realm="proxy"\r\n')
        return
      }
    }
    if (deny?.(target)) {
      refuse(403, 'Forbidden')
      return
    }
    const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(target)
    if (!match) {
      refuse(400, 'Bad Request')
      return
    }
    const host = (match[1] ?? '').replace(/^\[|\]$/g, '')
    const upstream = connect({ host, port: Number(match[2]) })
    this.#sockets.add(client)
    this.#sockets.add(upstream)
    upstream.on('error', () => {
      if (!client.destroyed) client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
    })
    upstream.once('connect', () => {
      this.tunnels.push(target)
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    const done = () => {
      client.destroy()
      upstream.destroy()
      this.#sockets.delete(client)
      this.#sockets.delete(upstream)
    }
    client.on('close', done)
    upstream.on('close', done)
  }
}
