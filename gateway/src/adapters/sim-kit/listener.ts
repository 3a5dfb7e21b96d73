import type { AddressInfo, Server } from 'node:net'

/**
 * The listening socket of a simulator: start and stop are idempotent, port 0 picks a free port, and stop
 * first lets the vendor cut its clients (`closeClients`) so close() does not wait for them.
 */
export class SimListener {
  readonly #host: string
  readonly #port: number
  readonly #create: () => Server
  #server: Server | undefined
  #stopping: Promise<void> | undefined

  constructor(options: { host?: string | undefined; port?: number | undefined; create: () => Server }) {
    this.#host = options.host ?? '127.0.0.1'
    this.#port = options.port ?? 0
    this.#create = options.create
  }

  /** Listens; resolves once bound. */
  async start(): Promise<void> {
    if (this.#server !== undefined) return
    const server = this.#create()
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, this.#host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  }

  stop(closeClients: () => void): Promise<void> {
    if (this.#stopping !== undefined) return this.#stopping
    const server = this.#server
    if (server === undefined) return Promise.resolve()
    closeClients()
    this.#stopping = new Promise<void>((resolve) => {
      if ('closeAllConnections' in server && typeof server.closeAllConnections === 'function') server.closeAllConnections()
      server.close(() => {
        this.#server = undefined
        this.#stopping = undefined
        resolve()
      })
    })
    return this.#stopping
  }

  /** True from stop() until the socket is closed: new clients are refused. */
  get stopping(): boolean {
    return this.#stopping !== undefined
  }

  get host(): string {
    return this.#host
  }

  get port(): number {
    const address = this.#server?.address()
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : 0
  }
}
