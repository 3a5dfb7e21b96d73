import { lookup } from 'node:dns/promises'
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'
import { request as httpsRequest } from 'node:https'

export interface DiagnosticCheck {
  name: string
  target: string
  ok: boolean
  /** What was found, or what went wrong and what to do, in plain words. */
  message: string
  durationMs: number
}

export interface DiagnosticsInput {
  brokerUrls: string[]
  /** The relay's https enrollment URL, for the clock check; undefined skips it. */
  enrollUrl: string | undefined
  /** CA (PEM) the box trusts for the relay: its enrolled relay CA. */
  caPem: string | undefined
  timeoutMs?: number
}

const DEFAULT_PORTS: Record<string, number> = { 'mqtts:': 8883, 'mqtt:': 1883, 'wss:': 443, 'ws:': 80, 'https:': 443 }

/** DNS, TCP and TLS to each broker URL, then the clock against the relay. Never throws: each check reports. */
export async function runDiagnostics(input: DiagnosticsInput): Promise<DiagnosticCheck[]> {
  const timeoutMs = input.timeoutMs ?? 5000
  const checks: DiagnosticCheck[] = []
  for (const raw of input.brokerUrls) {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      checks.push({ name: 'Broker URL', target: raw, ok: false, message: 'Not a valid URL: fix relay.url in the config or enrol again.', durationMs: 0 })
      continue
    }
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const port = Number(url.port) || DEFAULT_PORTS[url.protocol] || 443
    checks.push(await timed('DNS lookup', host, async () => {
      // getaddrinfo has no timeout of its own: a dead DNS server would hold the request for minutes.
      const addresses = await withTimeout(lookup(host, { all: true }), timeoutMs)
      return `${host} is ${addresses.map((a) => a.address).join(', ')}`
    }, (err) => `Cannot resolve ${host} (${code(err)}): check the box's DNS server and the relay address.`))
    checks.push(await timed('TCP connect', `${host}:${port}`, () => tcp(host, port, timeoutMs),
      (err) => code(err) === 'ECONNREFUSED'
        ? `${host}:${port} refused the connection: check the port and that the relay is running.`
        : `No TCP connection to ${host}:${port} (${code(err)}): a firewall may block outbound traffic to this port; ask for it to be opened, or use the wss fallback on 443.`))
    if (url.protocol === 'mqtts:' || url.protocol === 'wss:' || url.protocol === 'https:') {
      checks.push(await timed('TLS handshake', `${host}:${port}`, () => tls(host, port, input.caPem, timeoutMs),
        (err) => `TLS to ${host}:${port} failed (${code(err)}): ${tlsAdvice(code(err))}`))
    }
  }
  if (input.enrollUrl) {
    const enrollUrl = input.enrollUrl
    checks.push(await timed('Clock vs relay', enrollUrl, async () => {
      const relayDate = await httpDate(enrollUrl, input.caPem, timeoutMs)
      const skewMs = Date.now() - relayDate
      const seconds = Math.round(skewMs / 1000)
      if (Math.abs(skewMs) > 5 * 60_000) throw Object.assign(new Error(`the box clock is ${Math.abs(seconds)} s ${seconds < 0 ? 'behind' : 'ahead of'} the relay`), { code: 'CLOCK_SKEW' })
      return `The box clock is within ${Math.max(1, Math.abs(seconds))} s of the relay's.`
    }, (err) => code(err) === 'CLOCK_SKEW'
      ? `${(err as Error).message}: certificates will fail; enable NTP (timedatectl set-ntp true) or set the time.`
      : `Could not read the relay's clock (${code(err)}): check the enrollment URL and the network.`))
  }
  return checks
}

async function timed(name: string, target: string, run: () => Promise<string>, explain: (err: unknown) => string): Promise<DiagnosticCheck> {
  const started = Date.now()
  try {
    return { name, target, ok: true, message: await run(), durationMs: Date.now() - started }
  } catch (err) {
    return { name, target, ok: false, message: explain(err), durationMs: Date.now() - started }
  }
}

function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs) })
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer))
}

function code(err: unknown): string {
  const c = (err as { code?: unknown }).code
  return typeof c === 'string' ? c : (err as Error).message
}

function tlsAdvice(c: string): string {
  if (/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/.test(c)) return 'the certificate dates do not match the box clock: check the clock (see below).'
  if (/SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(c)) return 'the box does not trust this certificate: enrol the box (it then trusts the relay\'s CA), or a TLS-inspecting proxy is in the way.'
  if (/ALTNAME/.test(c)) return 'the certificate is for another name: use the relay address shown in the console.'
  return 'check the network path to the relay.'
}

function tcp(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = netConnect({ host, port })
    socket.setTimeout(timeoutMs, () => socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
    socket.once('connect', () => {
      socket.destroy()
      resolve(`Connected in ${Date.now() - started} ms.`)
    })
    socket.once('error', reject)
  })
}

function tls(host: string, port: number, caPem: string | undefined, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host, port, servername: /^[0-9.:]+$/.test(host) ? undefined : host, ...(caPem ? { ca: caPem } : {}), ALPNProtocols: ['mqtt', 'http/1.1'] })
    socket.setTimeout(timeoutMs, () => socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
    socket.once('secureConnect', () => {
      const cert: PeerCertificate = socket.getPeerCertificate()
      socket.destroy()
      resolve(`Trusted certificate for ${cert.subject?.CN ?? host}, valid ${new Date(cert.valid_from).toISOString().slice(0, 10)} to ${new Date(cert.valid_to).toISOString().slice(0, 10)}.`)
    })
    socket.once('error', reject)
  })
}

function httpDate(url: string, caPem: string | undefined, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    // The Date header only: the answer is not trusted for anything else, so an unknown CA does not stop the check.
    const req = httpsRequest(new URL('/enroll/v1/time', url), { method: 'GET', rejectUnauthorized: false, ...(caPem ? { ca: caPem } : {}), timeout: timeoutMs }, (res) => {
      res.resume()
      const date = Date.parse(res.headers.date ?? '')
      if (Number.isNaN(date)) reject(Object.assign(new Error('no Date header'), { code: 'NO_DATE' }))
      else resolve(date)
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
    req.on('error', reject)
    req.end()
  })
}
