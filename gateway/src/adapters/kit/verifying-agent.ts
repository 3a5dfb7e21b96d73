import type { ClientRequestArgs } from 'node:http'
import { Agent, type AgentOptions } from 'node:https'
import type { Duplex } from 'node:stream'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'

/**
 * An https Agent (for `ws` or `https.request`) that finishes the TLS handshake and runs `verify` before any
 * HTTP byte is written, so credentials in the request (HTTP Basic on an upgrade) never reach an impostor, and
 * a refusal can name the certificate that was presented.
 */
export class VerifyingAgent extends Agent {
  readonly #verify: (socket: TLSSocket) => Error | undefined

  constructor(options: AgentOptions, verify: (socket: TLSSocket) => Error | undefined) {
    super({ keepAlive: false, ...options })
    this.#verify = verify
  }

  override createConnection(options: ClientRequestArgs, callback?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const socket = tlsConnect({
      ...(options as object),
      host: options.host ?? undefined,
      port: Number(options.port),
      // Verification happens in #verify, so a failure can say which certificate was presented.
      rejectUnauthorized: false,
    })
    let done = false
    const finish = (error: Error | null): void => {
      if (done) return
      done = true
      if (error !== null) socket.destroy()
      callback?.(error, socket)
    }
    socket.once('secureConnect', () => finish(this.#verify(socket) ?? null))
    socket.once('error', (error) => finish(error))
    return undefined
  }
}
