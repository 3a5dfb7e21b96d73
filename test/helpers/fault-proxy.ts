import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net'

export interface FaultProxyStats {
  /** Connections accepted since start (including refused ones while cut). */
  connections: number
  /** Connections currently forwarded (or held while blackholed). */
  active: number
  /** Bytes forwarded box → broker and broker → box. */
  bytesUp: number
  bytesDown: number
  /** Connections reset at once because the link was cut. */
  refused: number
}

type Mode = 'pass' | 'cut' | 'blackhole'

interface Pair {
  client: Socket
  upstream: Socket
  /** Data held while blackholed, forwarded on restore (as TCP retransmits would). */
  heldUp: Buffer[]
  heldDown: Buffer[]
}

/**
 * A TCP proxy between the box and the broker for fault tests, on 127.0.0.1. `cut()` resets every connection and
 * every new one; `blackhole()` accepts but forwards nothing (a silent peer: the box only notices through its
 * keepalive); `restore()` goes back to forwarding (held bytes are delivered). Counters of connections and bytes.
 */
export class FaultProxy {
  readonly #server: Server
  readonly #target: { host: string; port: number }
  readonly #pairs = new Set<Pair>()
  #mode: Mode = 'pass'
  readonly #stats: FaultProxyStats = { connections: 0, active: 0, bytesUp: 0, bytesDown: 0, refused: 0 }

  private constructor(target: { host: string; port: number }) {
    this.#target = target
    this.#server = createServer((client) => this.#accept(client))
  }

  static async start(target: { host?: string; port: number }, port = 0): Promise<FaultProxy> {
    const proxy = new FaultProxy({ host: target.host ?? '127.0.0.1', port: target.port })
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once('error', reject)
      proxy.#server.listen(port, '127.0.0.1', () => resolve())
    })
    return proxy
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port
  }

  get mode(): Mode {
    return this.#mode
  }

  stats(): FaultProxyStats {
    return { ...this.#stats, active: this.#pairs.size }
  }

  /** Resets every connection now and every new one until restore(). */
  cut(): void {
    this.#mode = 'cut'
    for (const pair of this.#pairs) this.#drop(pair)
  }

  /** Keeps connections open and accepts new ones, but forwards nothing until restore(). */
  blackhole(): void {
    this.#mode = 'blackhole'
  }

  restore(): void {
    const wasBlackhole = this.#mode === 'blackhole'
    this.#mode = 'pass'
    if (!wasBlackhole) return
    for (const pair of this.#pairs) {
      for (const chunk of pair.heldUp.splice(0)) this.#forward(pair.upstream, chunk, 'bytesUp')
      for (const chunk of pair.heldDown.splice(0)) this.#forward(pair.client, chunk, 'bytesDown')
    }
  }

  async close(): Promise<void> {
    for (const pair of this.#pairs) this.#drop(pair)
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #accept(client: Socket): void {
    this.#stats.connections += 1
    client.on('error', () => undefined)
    if (this.#mode === 'cut') {
      this.#stats.refused += 1
      client.resetAndDestroy()
      return
    }
    const upstream = connect(this.#target)
    upstream.on('error', () => undefined)
    const pair: Pair = { client, upstream, heldUp: [], heldDown: [] }
    this.#pairs.add(pair)
    client.on('data', (chunk: Buffer) => {
      if (this.#mode === 'blackhole') pair.heldUp.push(chunk)
      else this.#forward(upstream, chunk, 'bytesUp')
    })
    upstream.on('data', (chunk: Buffer) => {
      if (this.#mode === 'blackhole') pair.heldDown.push(chunk)
      else this.#forward(client, chunk, 'bytesDown')
    })
    const end = () => this.#drop(pair)
    client.on('close', end)
    upstream.on('close', end)
  }

  #forward(socket: Socket, chunk: Buffer, counter: 'bytesUp' | 'bytesDown'): void {
    if (socket.destroyed) return
    this.#stats[counter] += chunk.length
    socket.write(chunk)
  }

  #drop(pair: Pair): void {
    if (!this.#pairs.delete(pair)) return
    pair.client.resetAndDestroy()
    pair.upstream.destroy()
  }
}
