import type { ClientRequestArgs } from 'node:http'
import { connect as netConnect, isIP, type Socket } from 'node:net'
import { Duplex } from 'node:stream'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import type { IClientOptions, MqttClient } from 'mqtt'
import { streamBuilder as wsStreamBuilder } from 'mqtt/lib/connect/ws'

/**
 * How the box reaches the broker: plain MQTT, MQTT over TLS, MQTT over WebSocket (wss on 443 for sites that
 * only let HTTPS out), each optionally through an HTTP proxy (CONNECT tunnel). Streams are built here so
 * mqtt.js gets a ready duplex whatever the path.
 */
export type BrokerProtocol = 'mqtt' | 'mqtts' | 'ws' | 'wss'

export interface BrokerTarget {
  /** As configured, for logs (credentials stripped). */
  url: string
  protocol: BrokerProtocol
  host: string
  port: number
  /** ws/wss only. */
  path: string
}

export interface ClientTls {
  /** PKCS#8 or SEC1 PEM of the box's private key. */
  keyPem: string
  /** The box's certificate (PEM), issued by the relay's CA. */
  certPem: string
  /** CA certificates that sign the broker's server certificate (PEM). */
  caPem: string
}

export interface TransportOptions {
  tls?: ClientTls | undefined
  /** Extra CA (PEM) when there is no client certificate (server-auth TLS only). */
  caPem?: string | undefined
  /** http://[user:pass@]proxy:port: every connection is tunnelled with HTTP CONNECT. */
  proxyUrl?: string | undefined
  connectTimeoutMs: number
}

export class TransportError extends Error {
  constructor(readonly code: 'TRANSPORT_BAD_URL' | 'PROXY_BAD_URL' | 'PROXY_CONNECT_FAILED' | 'PROXY_REFUSED' | 'PROXY_TIMEOUT', message: string) {
    super(message)
    this.name = 'TransportError'
  }
}

const DEFAULT_PORTS: Record<BrokerProtocol, number> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 }

/** Parses a broker URL; throws a TransportError that says what is wrong. */
export function parseBrokerUrl(raw: string): BrokerTarget {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new TransportError('TRANSPORT_BAD_URL', `broker URL "${raw}" is not a URL: write e.g. mqtts://relay.example.com:8883 or wss://relay.example.com/mqtt`)
  }
  const protocol = url.protocol.replace(/:$/, '')
  if (protocol !== 'mqtt' && protocol !== 'mqtts' && protocol !== 'ws' && protocol !== 'wss') {
    throw new TransportError('TRANSPORT_BAD_URL', `broker URL "${raw}" has scheme ${protocol}: use mqtt://, mqtts://, ws:// or wss://`)
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  if (!host) throw new TransportError('TRANSPORT_BAD_URL', `broker URL "${raw}" has no host`)
  const port = url.port ? Number(url.port) : DEFAULT_PORTS[protocol]
  const shown = new URL(raw)
  shown.username = ''
  shown.password = ''
  return { url: shown.toString(), protocol, host, port, path: protocol === 'ws' || protocol === 'wss' ? `${url.pathname}${url.search}` || '/' : '' }
}

export function parseProxyUrl(raw: string): URL {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new TransportError('PROXY_BAD_URL', `proxy URL "${raw}" is not a URL: write http://proxy.example.com:3128 (user:pass@ before the host if it needs a login)`)
  }
  if (url.protocol !== 'http:') throw new TransportError('PROXY_BAD_URL', `proxy URL "${raw}": only http:// proxies (HTTP CONNECT) are supported`)
  return url
}

/** The duplex mqtt.js talks MQTT over, for one connection attempt. Never throws: failures arrive as 'error'. */
export function openBrokerStream(client: MqttClient, target: BrokerTarget, options: TransportOptions): Duplex {
  const secure = target.protocol === 'mqtts' || target.protocol === 'wss'
  const tlsOptions: ConnectionOptions = {
    rejectUnauthorized: true,
    ...(isIP(target.host) === 0 ? { servername: target.host } : {}),
    ...(options.tls ? { key: options.tls.keyPem, cert: options.tls.certPem, ca: options.tls.caPem } : {}),
    ...(!options.tls && options.caPem ? { ca: options.caPem } : {}),
  }
  const proxy = options.proxyUrl ? parseProxyUrl(options.proxyUrl) : undefined

  if (target.protocol === 'ws' || target.protocol === 'wss') {
    const wsOptions: ClientRequestArgs & ConnectionOptions = { ...(secure ? tlsOptions : {}), timeout: options.connectTimeoutMs }
    if (proxy) {
      // ws hands this to http(s).request; the callback form lets the tunnel open first.
      wsOptions.createConnection = (_requestOptions, done) => {
        openTunnel(proxy, target.host, target.port, options.connectTimeoutMs).then(
          (socket) => done(null, secure ? tlsConnect({ ...tlsOptions, socket }) : socket),
          (err: Error) => done(err, undefined as unknown as Duplex),
        )
        return undefined
      }
    }
    const opts: IClientOptions = { protocol: target.protocol, hostname: target.host, port: target.port, path: target.path, wsOptions }
    return wsStreamBuilder(client, opts) as unknown as Duplex
  }

  let socket: Duplex
  if (proxy) {
    const tunnel = new TunnelStream()
    openTunnel(proxy, target.host, target.port, options.connectTimeoutMs).then((s) => tunnel.attach(s), (err: Error) => tunnel.destroy(err))
    socket = tunnel
  } else if (!secure) {
    const s = netConnect({ host: target.host, port: target.port })
    s.setNoDelay(true)
    socket = s
  } else {
    return tlsConnect({ ...tlsOptions, host: target.host, port: target.port })
  }
  return secure ? tlsConnect({ ...tlsOptions, socket }) : socket
}

/**
 * Opens a TCP connection to `host:port` through an HTTP proxy (CONNECT). Resolves with the socket once the proxy
 * answered 200; rejects with a TransportError naming the fix otherwise.
 */
export function openTunnel(proxy: URL, host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const proxyPort = proxy.port ? Number(proxy.port) : 80
    const proxyHost = proxy.hostname.startsWith('[') ? proxy.hostname.slice(1, -1) : proxy.hostname
    const socket = netConnect({ host: proxyHost, port: proxyPort })
    let settled = false
    const fail = (err: TransportError): void => {
      if (settled) return
      settled = true
      socket.destroy()
      reject(err)
    }
    socket.setTimeout(timeoutMs, () => fail(new TransportError('PROXY_TIMEOUT', `HTTP proxy ${proxyHost}:${proxyPort} did not open a tunnel to ${host}:${port} within ${timeoutMs} ms`)))
    socket.once('error', (err: NodeJS.ErrnoException) => {
      fail(new TransportError('PROXY_CONNECT_FAILED', `cannot reach the HTTP proxy ${proxyHost}:${proxyPort} (${err.code ?? err.message}): check relay.proxyUrl`))
    })
    socket.once('close', () => fail(new TransportError('PROXY_CONNECT_FAILED', `HTTP proxy ${proxyHost}:${proxyPort} closed the connection before answering CONNECT`)))
    socket.once('connect', () => {
      const authority = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`
      const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`]
      if (proxy.username) {
        const credentials = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`
        lines.push(`Proxy-Authorization: Basic ${Buffer.from(credentials).toString('base64')}`)
      }
      socket.write(`${lines.join('\r\n')}\r\n\r\n`)
    })
    let head = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf('\r\n\r\n')
      if (end < 0) {
        if (head.length > 16_384) fail(new TransportError('PROXY_REFUSED', `HTTP proxy ${proxyHost}:${proxyPort} sent an oversized answer to CONNECT`))
        return
      }
      socket.off('data', onData)
      const statusLine = head.subarray(0, head.indexOf('\r\n')).toString('latin1')
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0)
      if (status !== 200) {
        const hint = status === 407 ? ': the proxy wants a login, put user:password@ in relay.proxyUrl' : status === 403 ? `: the proxy does not allow ${authority(host, port)}; ask for the relay host to be allowed` : ''
        fail(new TransportError('PROXY_REFUSED', `HTTP proxy ${proxyHost}:${proxyPort} refused CONNECT ${authority(host, port)} with "${statusLine.slice(0, 200)}"${hint}`))
        return
      }
      settled = true
      socket.setTimeout(0)
      socket.removeAllListeners('close')
      socket.removeAllListeners('error')
      socket.setNoDelay(true)
      const rest = head.subarray(end + 4)
      if (rest.length > 0) socket.unshift(rest)
      resolve(socket)
    }
    socket.on('data', onData)
  })
}

function authority(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`
}

/** A duplex returned at once and connected to the real socket when the tunnel is up; writes wait until then. */
class TunnelStream extends Duplex {
  #socket: Socket | undefined
  #pendingWrite: (() => void) | undefined
  #pendingCallback: ((err?: Error | null) => void) | undefined

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    const socket = this.#socket
    if (socket) {
      socket.write(chunk, callback)
      return
    }
    this.#pendingCallback = callback
    this.#pendingWrite = () => {
      this.#pendingCallback = undefined
      this.#socket?.write(chunk, callback)
    }
  }

  override _read(): void {
    this.#socket?.resume()
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.#socket) this.#socket.end(callback)
    else callback()
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#socket?.destroy()
    this.#pendingCallback?.(err ?? new Error('tunnel closed'))
    this.#pendingCallback = undefined
    callback(err)
  }

  attach(socket: Socket): void {
    if (this.destroyed) {
      socket.destroy()
      return
    }
    this.#socket = socket
    socket.on('data', (data: Buffer) => {
      if (!this.push(data)) socket.pause()
    })
    socket.on('end', () => this.push(null))
    socket.on('error', (err) => this.destroy(err))
    socket.on('close', () => this.destroy())
    const write = this.#pendingWrite
    this.#pendingWrite = undefined
    write?.()
  }
}
