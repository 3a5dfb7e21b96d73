/**
 * No unauthenticated WebSocket handshake can take the relay down: an `Origin: null`, an `Origin: //` or a cookie
 * `pbx_console=%` used to throw inside the discarded promise of the live upgrade, and the process exited. Sent to
 * the real relay process, each is answered with a 4xx and the relay keeps answering /healthz.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { startRelayProcess } from '../console/fixtures/relay-process.js'

/** Sends a raw WebSocket handshake and returns the status line of the answer ('' if the connection closed without one). */
function handshake(base: string, headers: Record<string, string>): Promise<string> {
  const { hostname, port } = new URL(base)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let answer = ''
    socket.on('data', (chunk) => { answer += chunk.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(answer.split('\r\n')[0] ?? ''))
    socket.setTimeout(10_000, () => socket.destroy())
    const lines = ['GET /api/v1/live HTTP/1.1', `Host: ${hostname}:${port}`, 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']
    for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

t.test('malformed live handshakes are refused and the relay process keeps serving', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'live-upgrade-'))
  const relay = await startRelayProcess(dir)
  t.teardown(async () => {
    await relay.stop()
    await rm(dir, { recursive: true, force: true })
  })
  const host = new URL(relay.base).host
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['Origin: null', { Origin: 'null' }, /^HTTP\/1\.1 403/],
    ['Origin: //', { Origin: '//' }, /^HTTP\/1\.1 403/],
    ['cookie pbx_console=%', { Origin: `http://${host}`, Cookie: 'pbx_console=%' }, /^HTTP\/1\.1 401/],
    ['cookie pbx_console=%E0%A4%A', { Origin: `http://${host}`, Cookie: 'pbx_console=%E0%A4%A' }, /^HTTP\/1\.1 401/],
  ]
  for (const [name, headers, expected] of cases) {
    t.match(await handshake(relay.base, headers), expected, `${name}: refused`)
    const health = await fetch(`${relay.base}/healthz`).catch((err: Error) => err)
    t.equal(health instanceof Response ? health.status : String(health), 200, `${name}: the relay still answers /healthz`)
  }
  const api = await fetch(`${relay.base}/api/v1/people`, { headers: { cookie: 'pbx_console=%' } })
  t.equal(api.status, 401, 'a malformed cookie on an API request is a 401, not a 500')
  t.match(((await api.json()) as { error: { message: string } }).error.message, /sign in/)
  t.equal(relay.child.exitCode, null, 'the process is still running')
  t.notMatch(relay.output(), /unhandled|uncaught/i, 'nothing went unhandled')
})
