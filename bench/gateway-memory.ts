/**
 * Gateway memory benchmark: the gateway as the box runs it (the dist/gateway.js bundle in its own process, the
 * setup page on, connected to a relay) with N extensions monitored on the OSBiz simulator, under the Node the box
 * ships. Prints the gateway's resident memory (RSS, its peak and the V8 heap) once every extension is monitored
 * and again after a burst of calls, for each set of Node options given (target: <= 100 MB RSS with 500
 * extensions; the smallest Pi has 1 GB), and how fast it started: process start to the setup page answering, and
 * to the first extension monitored on the PBX.
 *
 *   npm run bench:memory -- [--endpoints 500] [--node ~/.cache/pbx-gateway/node-24/bin/node]
 *                           [--options "" --options "--max-semi-space-size=2"] [--calls 2000] [--gateway dist/gateway.js]
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { request } from 'node:https'
import { createServer } from 'node:net'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { unitNodeLaunch } from '../firmware/image/compile-cache.js'
import { DEMO_PEOPLE, Stack } from '../scripts/stack.js'

const HELP = `npm run bench:memory -- [options]

  --endpoints N     extensions monitored on the OSBiz simulator (default 500)
  --node FILE       the Node binary that runs the gateway (default the box's Node 24 from
                    scripts/fetch-node.sh in ~/.cache/pbx-gateway/node-24, else this one)
  --options TEXT    Node command-line options for one run (repeat for several runs; default:
                    two runs, with the environment and Node options of the appliance's unit
                    (firmware/systemd/pbx-gateway.service) and with none)
  --calls N         calls made on the simulator after the monitors are up (default 2000)
  --settle S        seconds to wait before each reading (default 5)
  --gateway FILE    the gateway bundle to run (default dist/gateway.js); an older build copied
                    with its gateway-chunks/ to dist/old/ compares two builds on one machine
                    (with --options, set the unit's MALLOC_ARENA_MAX=2 in this environment)

Start-up: from spawning Node to the setup page's first HTTPS answer, and to the simulator's
first monitor request. Without Node's compile cache (the box has one from its image).

  BENCH_GATEWAY_OUTPUT=1 shows the gateway's own output (with --options=--trace-gc, its GC log).
`

const { values } = parseArgs({
  options: {
    endpoints: { type: 'string', default: '500' },
    node: { type: 'string' },
    options: { type: 'string', multiple: true },
    calls: { type: 'string', default: '2000' },
    settle: { type: 'string', default: '5' },
    gateway: { type: 'string', default: 'dist/gateway.js' },
    help: { type: 'boolean', default: false },
  },
})
if (values.help) {
  process.stdout.write(HELP)
  process.exit(0)
}
const ENDPOINTS = Number(values.endpoints)
const CALLS = Number(values.calls)
const SETTLE_MS = Number(values.settle) * 1000
if (!Number.isInteger(ENDPOINTS) || ENDPOINTS < 1 || ENDPOINTS > 20_000) throw new Error(`--endpoints takes a number from 1 to 20000 (got ${values.endpoints})`)
if (!Number.isInteger(CALLS) || CALLS < 0) throw new Error(`--calls takes a whole number (got ${values.calls})`)
const boxNode = join(homedir(), '.cache', 'pbx-gateway', 'node-24', 'bin', 'node')
const NODE = values.node ?? (existsSync(boxNode) ? boxNode : process.execPath)
const BUNDLE = values.gateway
if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing: run npm run build first`)

// The unit's Node options and environment, read as the image build reads them; not its compile cache (the runs would share it).
const launch = unitNodeLaunch(await readFile('firmware/systemd/pbx-gateway.service', 'utf8'))
const { NODE_COMPILE_CACHE: _cache, ...unitEnv } = launch.env
const unit = { env: unitEnv, args: launch.nodeArgs }
// --options go on Node's command line, so V8 flags that NODE_OPTIONS refuses (--trace-gc) can be tried too.
const runs: Array<{ label: string; env: Record<string, string>; args: string[] }> = values.options
  ? values.options.map((options) => ({ label: options || '(none)', env: {}, args: options.split(/\s+/).filter(Boolean) }))
  : [{ label: `the unit's: ${[...Object.entries(unit.env).map(([k, v]) => `${k}=${v}`), ...unit.args].join(' ')}`, ...unit }, { label: '(none)', env: {}, args: [] }]

const people = Array.from({ length: ENDPOINTS }, (_, i) => DEMO_PEOPLE[i] ?? { extension: String(201 + i), name: `Person ${i + 1}`, email: `person${i + 1}@contoso.example` })
const work = await mkdtemp(join(tmpdir(), 'gateway-memory-'))
const stack = new Stack({ dataDir: join(work, 'stack'), logger: pino({ level: 'silent' }), people })
await stack.startSimulators()
await stack.startRelay()

interface Reading { rssMiB: number; peakMiB: number; cpuS: number }

async function readMemory(pid: number): Promise<Reading> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  // utime and stime, in clock ticks (100 per second on Linux), after the command name in parentheses.
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ')
  return { rssMiB: kib('VmRSS') / 1024, peakMiB: kib('VmHWM') / 1024, cpuS: (Number(stat[11]) + Number(stat[12])) / 100 }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** True once the setup page answers over HTTPS (any status: the server and its routes are up). */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume()
      resolve(true)
    })
    req.on('error', () => resolve(false))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}

interface StartUp { setupPageS: number; firstMonitorS: number; allMonitoredS: number }

const results: Array<{ label: string; monitored: Reading; afterCalls: Reading; start: StartUp }> = []
for (const { label, env, args } of runs) {
  const dir = join(work, `run-${results.length}`)
  const config = join(work, `gateway-${results.length}.json`)
  const gw = stack.gatewayConfig()
  const webPort = await freePort()
  await writeFile(config, JSON.stringify({
    gatewayId: gw.gatewayId,
    relay: { url: stack.brokerUrl, username: gw.relay.username, password: gw.relay.password },
    dataDir: dir,
    logLevel: 'warn',
    web: { host: '127.0.0.1', port: webPort },
    connectors: [{ id: 'osbiz-main', type: 'osbiz', host: '127.0.0.1', port: stack.pbx.port, applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret', users: people.map((p) => ({ extension: p.extension, name: p.name, email: p.email })) }],
  }))
  const began = performance.now()
  const child = spawn(NODE, [...args, BUNDLE, '--config', config], { env: { ...process.env, ...env }, stdio: ['ignore', process.env.BENCH_GATEWAY_OUTPUT ? 'inherit' : 'ignore', 'inherit'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  try {
    process.stdout.write(`[${label}] starting the gateway under ${NODE} ...\n`)
    const alive = () => {
      if (child.exitCode !== null) throw new Error(`the gateway exited with code ${child.exitCode} (${label})`)
    }
    const seconds = () => (performance.now() - began) / 1000
    // Polled every 20 ms, both at once: the setup page waits for nothing the PBX link does, and the reverse.
    const [setupPageS, firstMonitorS] = await Promise.all([
      (async () => {
        while (!(await answers(webPort))) {
          alive()
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        return seconds()
      })(),
      (async () => {
        while (stack.pbx.monitorCount < 1) {
          alive()
          await new Promise((resolve) => setTimeout(resolve, 20))
        }
        return seconds()
      })(),
    ])
    await until(`${ENDPOINTS} monitors on the simulator`, () => {
      alive()
      return stack.pbx.monitorCount >= ENDPOINTS
    }, 300_000)
    const start = { setupPageS, firstMonitorS, allMonitoredS: seconds() }
    process.stdout.write(`  setup page answered after ${setupPageS.toFixed(2)} s, first monitor after ${firstMonitorS.toFixed(2)} s\n`)
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const monitored = await readMemory(child.pid!)
    process.stdout.write(`  ${ENDPOINTS} monitored after ${start.allMonitoredS.toFixed(1)} s: RSS ${monitored.rssMiB.toFixed(1)} MiB (peak ${monitored.peakMiB.toFixed(1)}), CPU ${monitored.cpuS.toFixed(2)} s\n`)
    const callsBegan = performance.now()
    for (let i = 0; i < CALLS; i++) {
      const person = people[i % people.length]!
      const call = stack.pbx.incomingCall(person.extension)
      stack.pbx.answer(call)
      stack.pbx.hangup(call)
      if (i % 100 === 99) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const afterCalls = await readMemory(child.pid!)
    process.stdout.write(`  after ${CALLS} calls in ${((performance.now() - callsBegan) / 1000).toFixed(1)} s: RSS ${afterCalls.rssMiB.toFixed(1)} MiB (peak ${afterCalls.peakMiB.toFixed(1)}), CPU for the calls ${(afterCalls.cpuS - monitored.cpuS).toFixed(2)} s\n`)
    results.push({ label, monitored, afterCalls, start })
  } finally {
    child.kill('SIGTERM')
    await exited
    await until('the simulator to see the session close', () => stack.pbx.monitorCount === 0, 20_000).catch(() => undefined)
  }
}
await stack.stop()
await rm(work, { recursive: true, force: true })

process.stdout.write(`\nGateway memory, ${ENDPOINTS} extensions, ${(await new Promise<string>((resolve) => {
  const p = spawn(NODE, ['--version'])
  let out = ''
  p.stdout.on('data', (d: Buffer) => { out += d.toString() })
  p.on('close', () => resolve(out.trim()))
}))} (target <= 100 MB RSS)\n`)
process.stdout.write(`${'settings'.padEnd(64)} ${'monitored'.padStart(10)} ${'after calls'.padStart(12)} ${'peak'.padStart(8)} ${'setup page'.padStart(11)} ${'1st monitor'.padStart(12)}\n`)
for (const r of results) {
  process.stdout.write(`${r.label.padEnd(64)} ${`${r.monitored.rssMiB.toFixed(1)} MiB`.padStart(10)} ${`${r.afterCalls.rssMiB.toFixed(1)} MiB`.padStart(12)} ${`${r.afterCalls.peakMiB.toFixed(1)}`.padStart(8)} ${`${r.start.setupPageS.toFixed(2)} s`.padStart(11)} ${`${r.start.firstMonitorS.toFixed(2)} s`.padStart(12)}\n`)
}
