import { readdir, readFile, statfs } from 'node:fs/promises'
import { cpus, freemem, loadavg, totalmem, uptime } from 'node:os'
import { join, resolve } from 'node:path'
import type { Logger } from 'pino'
import type { TelemetryData } from '../../protocol/schemas.js'
import type { Clock } from '#kernel/clock.js'

/** The machine-health part of the telemetry message (the process counters are added by the app). */
export type SystemHealth = Pick<TelemetryData,
  'cpuPercent' | 'load1' | 'memUsedBytes' | 'memTotalBytes' | 'temperatureC' | 'diskUsedBytes' | 'diskTotalBytes' | 'systemUptimeS'>

export interface TelemetryCollectorOptions {
  /** A path on the file system whose usage is reported (the gateway's data directory). */
  dataPath: string
  /** A sample younger than this is reused: a telemetry tick stays cheap even at a short interval. */
  maxAgeMs?: number
}

/** What the collector reads from the OS, so a test can stand in for the OS edge (a board with a sensor). */
export interface SystemProbe {
  /** Busy share of all CPUs since the previous call (since boot on the first), 0–100. */
  cpuPercent(): Promise<number>
  /** Memory in use, as an operator means it: total minus what the kernel says is available (cache is free). */
  mem(): Promise<{ total: number; used: number }>
  /** The CPU's temperature in °C, or null where the board has no sensor. */
  cpuTemperature(): Promise<number | null>
  /** The file system holding path. */
  disk(path: string): Promise<{ size: number; used: number }>
  uptimeS(): number
}

/**
 * The box's own probe: Node's os module, /proc/meminfo and /sys/class/thermal (Linux), statfs. It replaced the
 * systeminformation package, which loads about twenty modules at start for the five readings used here (about 10
 * MiB of the box's resident memory, bench/gateway-memory.ts).
 */
export function createSystemProbe(thermalDir = '/sys/class/thermal', meminfo = '/proc/meminfo'): SystemProbe {
  let previous: { busy: number; total: number } | undefined
  return {
    async cpuPercent() {
      let busy = 0
      let total = 0
      for (const { times } of cpus()) {
        const all = times.user + times.nice + times.sys + times.irq + times.idle
        total += all
        busy += all - times.idle
      }
      const since = previous
      previous = { busy, total }
      const spanTotal = total - (since?.total ?? 0)
      if (spanTotal <= 0) return 0
      return ((busy - (since?.busy ?? 0)) / spanTotal) * 100
    },
    async mem() {
      const total = totalmem()
      const text = await readFile(meminfo, 'utf8').catch(() => undefined)
      const availableKiB = text === undefined ? undefined : /^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1]
      const available = availableKiB === undefined ? freemem() : Number(availableKiB) * 1024
      return { total, used: Math.max(0, total - available) }
    },
    async cpuTemperature() {
      const zones = await readdir(thermalDir).catch(() => [] as string[])
      const readings: Array<{ type: string; celsius: number }> = []
      for (const zone of zones.filter((z) => z.startsWith('thermal_zone')).sort()) {
        const [type, milli] = await Promise.all([
          readFile(join(thermalDir, zone, 'type'), 'utf8').catch(() => ''),
          readFile(join(thermalDir, zone, 'temp'), 'utf8').catch(() => ''),
        ])
        const celsius = Number(milli.trim()) / 1000
        if (milli.trim() !== '' && Number.isFinite(celsius)) readings.push({ type: type.trim(), celsius })
      }
      // The Pi's SoC zone is "cpu-thermal", a PC's package "x86_pkg_temp"; otherwise the first zone.
      const cpu = readings.find((r) => /cpu|pkg|soc/i.test(r.type)) ?? readings[0]
      return cpu?.celsius ?? null
    },
    async disk(path) {
      const fs = await statfs(path)
      return { size: fs.blocks * fs.bsize, used: (fs.blocks - fs.bfree) * fs.bsize }
    },
    uptimeS: () => uptime(),
  }
}

/**
 * Collects the box's health: CPU, load, memory, temperature (only where a sensor exists),
 * disk of the data path, system uptime. One probe at a time; the last sample is cached for `maxAgeMs`, and a
 * failed probe leaves its fields out instead of reporting zeros.
 */
export class TelemetryCollector {
  readonly #options: Required<TelemetryCollectorOptions>
  readonly #deps: { clock: Clock; logger: Logger; probe: SystemProbe }
  #cached: { at: number; health: SystemHealth } | undefined
  #running: Promise<SystemHealth> | undefined
  #warned = new Set<string>()

  constructor(options: TelemetryCollectorOptions, deps: { clock: Clock; logger: Logger; probe?: SystemProbe }) {
    this.#options = { maxAgeMs: 10_000, ...options, dataPath: resolve(options.dataPath) }
    this.#deps = { probe: createSystemProbe(), ...deps }
  }

  /** The latest sample, probing only when the cached one is older than maxAgeMs. Never throws. */
  async sample(): Promise<SystemHealth> {
    const now = this.#deps.clock.now()
    if (this.#cached && now - this.#cached.at < this.#options.maxAgeMs) return this.#cached.health
    this.#running ??= this.#probe().finally(() => {
      this.#running = undefined
    })
    return this.#running
  }

  async #probe(): Promise<SystemHealth> {
    const { probe } = this.#deps
    const [cpu, mem, celsius, disk] = await Promise.all([
      this.#attempt('cpu', () => probe.cpuPercent()),
      this.#attempt('memory', () => probe.mem()),
      this.#attempt('temperature', () => probe.cpuTemperature()),
      this.#attempt('disk', () => probe.disk(this.#options.dataPath)),
    ])
    const health: SystemHealth = { load1: round2(loadavg()[0] ?? 0) }
    if (cpu !== undefined && Number.isFinite(cpu)) health.cpuPercent = round2(Math.min(100, Math.max(0, cpu)))
    if (mem) {
      health.memUsedBytes = Math.max(0, Math.round(mem.used))
      health.memTotalBytes = Math.max(0, Math.round(mem.total))
    }
    // No sensor: null; some boards report -1 or 0 instead. Then the field is left out, not reported as 0.
    if (typeof celsius === 'number' && Number.isFinite(celsius) && celsius > 0 && celsius < 150) health.temperatureC = round2(celsius)
    if (disk && disk.size > 0) {
      health.diskUsedBytes = Math.max(0, Math.round(disk.used))
      health.diskTotalBytes = Math.max(0, Math.round(disk.size))
    }
    const uptime = this.#sync('uptime', () => probe.uptimeS())
    if (uptime !== undefined && Number.isFinite(uptime) && uptime >= 0) health.systemUptimeS = Math.round(uptime)
    this.#cached = { at: this.#deps.clock.now(), health }
    return health
  }

  async #attempt<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await fn()
    } catch (err) {
      this.#warnOnce(what, err)
      return undefined
    }
  }

  #sync<T>(what: string, fn: () => T): T | undefined {
    try {
      return fn()
    } catch (err) {
      this.#warnOnce(what, err)
      return undefined
    }
  }

  #warnOnce(what: string, err: unknown): void {
    if (this.#warned.has(what)) return
    this.#warned.add(what)
    this.#deps.logger.warn({ what, err: (err as Error).message }, 'reading the box\'s health failed; the field is left out of telemetry')
  }
}

function round2(value: number): number {
  return Math.round(value * 100) / 100
}
