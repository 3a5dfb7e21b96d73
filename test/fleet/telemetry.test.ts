import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createSystemProbe, TelemetryCollector, type SystemProbe } from '../../gateway/src/core/telemetry.js'
import { systemClock } from '#kernel/clock.js'
import { validateData } from '../../gateway/protocol/codec.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { ManualClock } from '../sync/fixtures/world.js'

t.test('the real OS readings on this machine', async (t) => {
  const { logger } = captureLogger()
  const collector = new TelemetryCollector({ dataPath: process.cwd() }, { clock: systemClock, logger })
  const health = await collector.sample()
  t.ok(typeof health.cpuPercent === 'number' && health.cpuPercent >= 0 && health.cpuPercent <= 100, `cpuPercent ${health.cpuPercent}`)
  t.ok(typeof health.load1 === 'number' && health.load1 >= 0, `load1 ${health.load1}`)
  t.ok((health.memTotalBytes ?? 0) > 0 && (health.memUsedBytes ?? 0) > 0 && health.memUsedBytes! <= health.memTotalBytes!, 'memory used and total')
  t.ok((health.diskTotalBytes ?? 0) > 0 && (health.diskUsedBytes ?? -1) >= 0, 'disk of the data path')
  t.ok((health.systemUptimeS ?? 0) > 0, 'system uptime')
  const zones = (await readdir('/sys/class/thermal').catch(() => [] as string[])).filter((z) => z.startsWith('thermal_zone'))
  const sensor = zones.length > 0 ? Number(await readFile(`/sys/class/thermal/${zones[0]}/temp`, 'utf8').catch(() => '0')) : 0
  if (sensor > 0) t.ok(typeof health.temperatureC === 'number', 'this machine has a sensor: temperature reported')
  else t.notOk('temperatureC' in health, 'this machine has no temperature sensor: the field is absent, not 0')
  const message = { uptimeS: 1, rssBytes: 1, eventsSent: 0, invalidCommands: 0, ...health, processUptimeS: 1, version: '0.1.0' }
  t.equal(validateData('telemetry', message), undefined, 'the message passes the protocol schema')
})

function probe(overrides: Partial<SystemProbe> = {}): SystemProbe & { calls: number } {
  const p = {
    calls: 0,
    cpuPercent: async () => { p.calls++; return 12.3456 },
    mem: async () => ({ total: 4_000_000_000, used: 1_000_000_000 }),
    cpuTemperature: async () => 48.25,
    disk: async (path: string) => (path.startsWith('/var/lib/pbxgw/') ? { size: 8e9, used: 1e9 } : { size: 32e9, used: 10e9 }),
    uptimeS: () => 3600.4,
    ...overrides,
  }
  return p
}

t.test('a board with a sensor, the data path\'s own file system, caching', async (t) => {
  const clock = new ManualClock()
  const { logger } = captureLogger()
  const p = probe()
  const collector = new TelemetryCollector({ dataPath: '/var/lib/pbxgw/data', maxAgeMs: 30_000 }, { clock, logger, probe: p })
  const health = await collector.sample()
  t.match(health, { cpuPercent: 12.35, memUsedBytes: 1_000_000_000, memTotalBytes: 4_000_000_000, temperatureC: 48.25, diskTotalBytes: 8e9, diskUsedBytes: 1e9, systemUptimeS: 3600 })
  await collector.sample()
  t.equal(p.calls, 1, 'a second tick within maxAgeMs reuses the sample')
  clock.advance(30_000)
  await collector.sample()
  t.equal(p.calls, 2, 'older than maxAgeMs: probed again')
  const [a, b] = await Promise.all([(clock.advance(30_000), collector.sample()), collector.sample()])
  t.equal(a, b, 'concurrent callers share one probe')
  t.equal(p.calls, 3)
})

t.test('no sensor, a failing probe: fields left out, one warning each', async (t) => {
  const clock = new ManualClock()
  const { logger, lines } = captureLogger()
  for (const main of [null, -1, 0]) {
    const collector = new TelemetryCollector({ dataPath: '/srv' }, { clock, logger, probe: probe({ cpuTemperature: async () => main }) })
    t.notOk('temperatureC' in (await collector.sample()), `temperature ${main}: no field`)
  }
  const collector = new TelemetryCollector({ dataPath: '/srv', maxAgeMs: 1 }, { clock, logger, probe: probe({ mem: async () => { throw new Error('no /proc/meminfo') } }) })
  const first = await collector.sample()
  clock.advance(10)
  await collector.sample()
  t.notOk('memUsedBytes' in first || 'memTotalBytes' in first, 'memory fields left out')
  t.equal(first.diskTotalBytes, 32e9, 'the disk of the data path is still reported')
  t.equal(lines().filter((l) => l.msg.startsWith('reading the box\'s health failed')).length, 1, 'warned once, not on every tick')
})

t.test('the Linux probe reads a board\'s thermal zones and meminfo, and the CPU share between calls', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'telemetry-probe-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const zone = async (name: string, type: string, milli: string) => {
    await mkdir(join(dir, 'thermal', name), { recursive: true })
    await writeFile(join(dir, 'thermal', name, 'type'), `${type}\n`)
    await writeFile(join(dir, 'thermal', name, 'temp'), `${milli}\n`)
  }
  await zone('thermal_zone0', 'acpitz', '27800')
  await zone('thermal_zone1', 'cpu-thermal', '48312')
  await mkdir(join(dir, 'thermal', 'cooling_device0'))
  await writeFile(join(dir, 'meminfo'), 'MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     600000 kB\n')
  const board = createSystemProbe(join(dir, 'thermal'), join(dir, 'meminfo'))
  t.equal(await board.cpuTemperature(), 48.312, 'the CPU zone wins over the first zone')
  const mem = await board.mem()
  t.equal(mem.used, mem.total - 600000 * 1024, 'used is total minus MemAvailable (the page cache counts as free)')
  t.equal(await createSystemProbe(join(dir, 'nothing-here'), join(dir, 'meminfo')).cpuTemperature(), null, 'no thermal zones: no sensor')
  await zone('thermal_zone2', 'x', 'garbage')
  t.equal(await createSystemProbe(join(dir, 'thermal'), join(dir, 'meminfo')).cpuTemperature(), 48.312, 'an unreadable zone is skipped')
  const host = createSystemProbe()
  const sinceBoot = await host.cpuPercent()
  t.ok(sinceBoot >= 0 && sinceBoot <= 100, `CPU since boot ${sinceBoot.toFixed(1)} %`)
  const spin = Date.now() + 200
  while (Date.now() < spin) { /* keep one CPU busy between the two readings */ }
  const busy = await host.cpuPercent()
  t.ok(busy > 0 && busy <= 100, `CPU over a busy 200 ms ${busy.toFixed(1)} % (above 0: measured between calls)`)
  const disk = await host.disk(dir)
  t.ok(disk.size > 0 && disk.used >= 0 && disk.used <= disk.size, 'statfs of the data path')
  await t.rejects(host.disk(join(dir, 'no', 'such', 'dir')), /ENOENT/, 'a missing data path is an error the collector turns into a left-out field')
})
