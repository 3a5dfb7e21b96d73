import si from 'systeminformation'
import t from 'tap'
import { TelemetryCollector, type SystemProbe } from '../../gateway/src/core/telemetry.js'
import { systemClock } from '../../gateway/src/core/clock.js'
import { validateData } from '../../gateway/protocol/codec.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { ManualClock } from '../sync/fixtures/world.js'

t.test('real systeminformation on this machine', async (t) => {
  const { logger } = captureLogger()
  const collector = new TelemetryCollector({ dataPath: process.cwd() }, { clock: systemClock, logger })
  const health = await collector.sample()
  t.ok(typeof health.cpuPercent === 'number' && health.cpuPercent >= 0 && health.cpuPercent <= 100, `cpuPercent ${health.cpuPercent}`)
  t.ok(typeof health.load1 === 'number' && health.load1 >= 0, `load1 ${health.load1}`)
  t.ok((health.memTotalBytes ?? 0) > 0 && (health.memUsedBytes ?? 0) > 0 && health.memUsedBytes! <= health.memTotalBytes!, 'memory used and total')
  t.ok((health.diskTotalBytes ?? 0) > 0 && (health.diskUsedBytes ?? -1) >= 0, 'disk of the data path')
  t.ok((health.systemUptimeS ?? 0) > 0, 'system uptime')
  const sensor = (await si.cpuTemperature()).main
  if (typeof sensor === 'number' && sensor > 0) t.ok(typeof health.temperatureC === 'number', 'this machine has a sensor: temperature reported')
  else t.notOk('temperatureC' in health, 'this machine has no temperature sensor: the field is absent, not 0')
  const message = { uptimeS: 1, rssBytes: 1, eventsSent: 0, invalidCommands: 0, ...health, processUptimeS: 1, version: '0.1.0' }
  t.equal(validateData('telemetry', message), undefined, 'the message passes the protocol schema')
})

function probe(overrides: Partial<SystemProbe> = {}): SystemProbe & { calls: number } {
  const p = {
    calls: 0,
    currentLoad: async () => { p.calls++; return { currentLoad: 12.3456 } },
    mem: async () => ({ total: 4_000_000_000, active: 1_000_000_000 }),
    cpuTemperature: async () => ({ main: 48.25 }),
    fsSize: async () => [
      { mount: '/', size: 32e9, used: 10e9 },
      { mount: '/var/lib/pbxgw', size: 8e9, used: 1e9 },
      { mount: '/var/lib/pbxgw-other', size: 1e9, used: 1e8 },
    ],
    uptimeS: () => 3600.4,
    ...overrides,
  }
  return p
}

t.test('a board with a sensor, the data path\'s own mount, caching', async (t) => {
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
    const collector = new TelemetryCollector({ dataPath: '/srv' }, { clock, logger, probe: probe({ cpuTemperature: async () => ({ main: main as number | null }) }) })
    t.notOk('temperatureC' in (await collector.sample()), `temperature ${main}: no field`)
  }
  const collector = new TelemetryCollector({ dataPath: '/srv', maxAgeMs: 1 }, { clock, logger, probe: probe({ mem: async () => { throw new Error('no /proc/meminfo') } }) })
  const first = await collector.sample()
  clock.advance(10)
  await collector.sample()
  t.notOk('memUsedBytes' in first || 'memTotalBytes' in first, 'memory fields left out')
  t.equal(first.diskTotalBytes, 32e9, 'a path under no specific mount falls back to /')
  t.equal(lines().filter((l) => l.msg.startsWith('reading the box\'s health failed')).length, 1, 'warned once, not on every tick')
})
