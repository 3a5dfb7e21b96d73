import { loadavg } from 'node:os'
import { resolve, sep } from 'node:path'
import si from 'systeminformation'
import type { Logger } from 'pino'
import type { TelemetryData } from '../../protocol/schemas.js'
import type { Clock } from './clock.js'

/** The machine-health part of the telemetry message (the process counters are added by the app). */
export type SystemHealth = Pick<TelemetryData,
  'cpuPercent' | 'load1' | 'memUsedBytes' | 'memTotalBytes' | 'temperatureC' | 'diskUsedBytes' | 'diskTotalBytes' | 'systemUptimeS'>

export interface TelemetryCollectorOptions {
  /** A path on the file system whose usage is reported (the gateway's data directory). */
  dataPath: string
  /** A sample younger than this is reused: a telemetry tick stays cheap even at a short interval. */
  maxAgeMs?: number
}

/** The systeminformation calls we use, so a test can stand in for the OS edge (a board with a sensor). */
export interface SystemProbe {
  currentLoad(): Promise<{ currentLoad: number }>
  mem(): Promise<{ total: number; active: number }>
  cpuTemperature(): Promise<{ main: number | null }>
  fsSize(): Promise<Array<{ mount: string; size: number; used: number }>>
  uptimeS(): number
}

export const systemProbe: SystemProbe = {
  currentLoad: () => si.currentLoad(),
  mem: () => si.mem(),
  cpuTemperature: () => si.cpuTemperature(),
  fsSize: () => si.fsSize(),
  uptimeS: () => si.time().uptime,
}

/**
 * Collects the box's health with systeminformation: CPU, load, memory, temperature (only where a sensor exists),
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
    this.#deps = { probe: systemProbe, ...deps }
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
    const [load, mem, temperature, disks] = await Promise.all([
      this.#attempt('cpu', () => probe.currentLoad()),
      this.#attempt('memory', () => probe.mem()),
      this.#attempt('temperature', () => probe.cpuTemperature()),
      this.#attempt('disk', () => probe.fsSize()),
    ])
    const health: SystemHealth = { load1: round2(loadavg()[0] ?? 0) }
    if (load && Number.isFinite(load.currentLoad)) health.cpuPercent = round2(Math.min(100, Math.max(0, load.currentLoad)))
    if (mem) {
      // "active" is memory really in use (without buffers and cache), what an operator means by "used".
      health.memUsedBytes = Math.max(0, Math.round(mem.active))
      health.memTotalBytes = Math.max(0, Math.round(mem.total))
    }
    const celsius = temperature?.main
    // systeminformation answers null (or, on some boards, -1 or 0) when there is no sensor: leave the field out.
    if (typeof celsius === 'number' && Number.isFinite(celsius) && celsius > 0 && celsius < 150) health.temperatureC = round2(celsius)
    const disk = disks ? this.#diskOf(disks) : undefined
    if (disk) {
      health.diskUsedBytes = Math.max(0, Math.round(disk.used))
      health.diskTotalBytes = Math.max(0, Math.round(disk.size))
    }
    const uptime = this.#sync('uptime', () => probe.uptimeS())
    if (uptime !== undefined && Number.isFinite(uptime) && uptime >= 0) health.systemUptimeS = Math.round(uptime)
    this.#cached = { at: this.#deps.clock.now(), health }
    return health
  }

  /** The mounted file system holding dataPath: the longest mount point that is a prefix of it. */
  #diskOf(disks: ReadonlyArray<{ mount: string; size: number; used: number }>): { size: number; used: number } | undefined {
    let best: { mount: string; size: number; used: number } | undefined
    for (const disk of disks) {
      const mount = disk.mount.endsWith(sep) ? disk.mount : `${disk.mount}${sep}`
      const inside = disk.mount === sep || `${this.#options.dataPath}${sep}`.startsWith(mount)
      if (inside && disk.size > 0 && (!best || disk.mount.length > best.mount.length)) best = disk
    }
    return best
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
