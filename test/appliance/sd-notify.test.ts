import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { call } from '../box-ui/fixtures/box-harness.js'
import { eventually } from '../helpers/eventually.js'

/**
 * The real gateway process under a notify socket, as systemd runs it with Type=notify and WatchdogSec=: the socket
 * is a python3 datagram listener (the OS edge), the messages come through the real systemd-notify.
 */

function startListener(socketPath: string): Promise<{ child: ChildProcess; messages: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [join('test', 'appliance', 'fixtures', 'notify-listener.py'), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] })
    const messages: string[] = []
    child.once('error', (err) => reject(new Error(`python3 is needed for the notify socket stand-in (apt-get install -y python3): ${err.message}`)))
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const parsed = JSON.parse(line) as { listening?: string; message?: string }
      if (parsed.listening) resolve({ child, messages })
      if (parsed.message !== undefined) messages.push(parsed.message)
    })
  })
}

t.test('under systemd: READY=1 with a status once the setup page listens, WATCHDOG=1 at half the interval, STOPPING=1; the console screen follows the claim', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sd-notify-'))
  const runtimeDir = join(dir, 'run')
  const socketPath = join(dir, 'notify.sock')
  const listener = await startListener(socketPath)
  t.teardown(async () => {
    listener.child.kill()
    await rm(dir, { recursive: true, force: true })
  })
  const configFile = join(dir, 'gateway.json')
  await writeFile(configFile, JSON.stringify({
    relay: { url: 'mqtts://127.0.0.1:1' },
    dataDir: join(dir, 'data'),
    web: { host: '127.0.0.1', port: 0 },
    connectors: [],
  }))
  const output: string[] = []
  const gateway = spawn(process.execPath, ['--import', 'tsx', 'gateway/src/main.ts', '--config', configFile], {
    env: { ...process.env, LOG_PRETTY: '0', NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '400000', RUNTIME_DIRECTORY: runtimeDir },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  gateway.stdout.on('data', (c: Buffer) => output.push(c.toString()))
  gateway.stderr.on('data', (c: Buffer) => output.push(c.toString()))
  const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)))
  t.teardown(() => { if (gateway.exitCode === null) gateway.kill('SIGKILL') })

  const ready = await eventually(() => listener.messages.find((m) => m.split('\n').includes('READY=1')), `READY=1 on the notify socket (gateway output: ${output.join('').slice(-800)})`, 60_000)
  t.match(ready, /^STATUS=setup page at https:\/\/[^;]+\/; 0 of 0 connectors up; relay not connected$/m, `with a status line: ${JSON.stringify(ready)}`)
  const url = /"url":"(https:\/\/[^"]+:\d+\/)"/.exec(output.join(''))?.[1]?.replace('localhost', '127.0.0.1')
  t.ok(url, 'the setup page listens')
  await eventually(() => listener.messages.filter((m) => m.startsWith('WATCHDOG=1')).length >= 3, 'three WATCHDOG=1 pings (every 200 ms for WATCHDOG_USEC=400000)', 15_000)
  t.pass('WATCHDOG=1 keeps coming while the event loop runs')

  // The console screen: written to $RUNTIME_DIRECTORY/console.issue with the code the box printed on stderr.
  const screenFile = join(runtimeDir, 'console.issue')
  const screen = await eventually(() => readFile(screenFile, 'utf8'), 'the console screen file')
  const code = /\b([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4})\b/.exec(output.join(''))?.[1]
  t.ok(code, 'the setup code on stderr')
  t.match(screen, code ?? 'no code', 'the same code on the console screen')
  const fingerprint = /"fingerprint256":"([0-9A-F:]+)"/.exec(output.join(''))?.[1] ?? 'none'
  t.match(screen, fingerprint.split(':').slice(0, 16).join(':'), 'with the certificate fingerprint')
  const setup = await call(`${url}api/setup`, { method: 'POST', body: { password: 'correct horse battery', setupCode: code } })
  t.equal(setup.status, 200, 'claimed with that code')
  const claimed = await eventually(async () => { const text = await readFile(screenFile, 'utf8'); return text.includes('is set up') ? text : undefined }, 'the screen to say the box is set up')
  t.notMatch(claimed, code ?? 'no code', 'the code is gone from the screen')

  gateway.kill('SIGTERM')
  t.equal(await exited, 0, 'stops cleanly on SIGTERM')
  t.ok(listener.messages.some((m) => m.split('\n').includes('STOPPING=1')), 'STOPPING=1 before it exits')
})

t.test('a missing systemd-notify is logged once in words, and nothing runs without NOTIFY_SOCKET', async (t) => {
  const { ServiceNotifier } = await import('../../gateway/src/appliance/service-notifier.js')
  const { ManualClock } = await import('../enrollment/fixtures/enrollment-world.js')
  const { captureLogger } = await import('../helpers/capture-logger.js')
  const clock = new ManualClock()
  const capture = captureLogger()
  const notifier = new ServiceNotifier({ logger: capture.logger, clock, env: { NOTIFY_SOCKET: '/nonexistent.sock', WATCHDOG_USEC: '1000000' }, notifyCommand: '/nonexistent/systemd-notify' })
  await notifier.ready()
  t.equal(clock.pending, 1, 'the watchdog ping is scheduled')
  clock.advance(500)
  // The next ping is scheduled only once the failed send has finished.
  await eventually(() => clock.pending === 1, 'the ping after a failed send to be scheduled again')
  const errors = capture.lines().filter((l) => l.level >= 50)
  t.equal(errors.length, 1, 'two failed sends, one error line')
  t.match(errors[0]?.msg, /systemd-notify failed: systemd will not see the gateway as ready or alive/)
  await notifier.stopping()
  t.equal(clock.pending, 0, 'stopping cancels the ping')

  const quiet = captureLogger()
  const off = new ServiceNotifier({ logger: quiet.logger, clock, env: {}, notifyCommand: '/nonexistent/systemd-notify' })
  await off.ready()
  t.equal(off.enabled, false)
  t.equal(clock.pending, 0, 'no ping without NOTIFY_SOCKET')
  t.same(quiet.lines().filter((l) => l.level >= 50), [], 'and no attempt to run systemd-notify')
})
