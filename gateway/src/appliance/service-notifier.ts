import { execFile } from 'node:child_process'
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'

/**
 * Tells systemd how the gateway is doing (sd_notify): READY=1 once the setup page listens and the connectors
 * started, STATUS= lines, WATCHDOG=1 while the event loop runs, STOPPING=1 on shutdown. Off when NOTIFY_SOCKET is
 * not set (a developer's terminal, the container).
 *
 * Why `systemd-notify` and not a socket of our own: the notify socket is an AF_UNIX datagram socket and Node has
 * none (dgram is UDP only; a native addon would have to be built for each image architecture). systemd-notify is in
 * the `systemd` package the image has anyway. The catch is attribution: the message comes from the systemd-notify
 * process, not from the gateway, so the unit needs `NotifyAccess=all`, and a sender that exits before systemd reads
 * the datagram could not be matched to its unit (systemd looks the sender's cgroup up by PID). Since systemd 246
 * systemd-notify sends BARRIER=1 after the message and waits until the manager has processed both (sd_notify_barrier)
 * unless `--no-block` is given, so the sender is still alive when it is attributed: this holds for bookworm's 252 and
 * trixie's 257 alike. We never pass `--pid`: on 252 it only adds MAINPID=, and the main PID is already node itself.
 * One short process every WATCHDOG_USEC/2 (15 s with WatchdogSec=30) costs a few milliseconds.
 */
export interface ServiceNotifierDeps {
  logger: Logger
  clock: Clock
  /** The process environment: NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID come from systemd. */
  env: NodeJS.ProcessEnv
  /** Path of the systemd-notify binary (default: found on PATH). */
  notifyCommand?: string
  /** The STATUS= line, read at every watchdog tick; sent when it changed. */
  status?: () => string
}

/** The watchdog interval systemd asks for, halved (the sd_watchdog_enabled rule), or undefined when off or not ours. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC)
  if (!Number.isInteger(usec) || usec <= 0) return undefined
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== pid) return undefined
  return Math.max(1, Math.floor(usec / 2000))
}

export class ServiceNotifier {
  readonly #deps: ServiceNotifierDeps
  readonly #log: Logger
  #timer: ClockTimer | undefined
  #lastStatus: string | undefined
  #running = false
  #failures = 0

  constructor(deps: ServiceNotifierDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'sd-notify' })
  }

  get enabled(): boolean {
    return Boolean(this.#deps.env.NOTIFY_SOCKET)
  }

  /** READY=1 with the first STATUS=, then the watchdog pings. Idempotent. */
  async ready(): Promise<void> {
    if (!this.enabled || this.#running) return
    this.#running = true
    this.#lastStatus = this.#deps.status?.()
    await this.#send(['READY=1', ...(this.#lastStatus ? [`STATUS=${this.#lastStatus}`] : [])])
    const interval = watchdogIntervalMs(this.#deps.env)
    this.#log.info({ watchdogIntervalMs: interval }, 'systemd told the gateway is ready')
    if (interval !== undefined) this.#schedule(interval)
  }

  /** STOPPING=1 and no more pings. Idempotent. */
  async stopping(): Promise<void> {
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    if (!this.enabled || !this.#running) return
    this.#running = false
    await this.#send(['STOPPING=1', 'STATUS=stopping'])
  }

  // A timer that only fires while the event loop turns: a blocked loop stops the pings and systemd restarts us.
  #schedule(interval: number): void {
    this.#timer = this.#deps.clock.setTimeout(() => {
      if (!this.#running) return
      const status = this.#deps.status?.()
      const changed = status !== undefined && status !== this.#lastStatus
      this.#lastStatus = status
      void this.#send(['WATCHDOG=1', ...(changed ? [`STATUS=${status}`] : [])]).finally(() => {
        if (this.#running) this.#schedule(interval)
      })
    }, interval)
  }

  #send(lines: string[]): Promise<void> {
    // One argument per VARIABLE=VALUE: no shell, so a status text cannot become a command.
    const args = lines.map((line) => line.replace(/[\r\n]+/g, ' '))
    return new Promise((resolve) => {
      execFile(this.#deps.notifyCommand ?? 'systemd-notify', args, { timeout: 10_000, env: this.#deps.env }, (err, _stdout, stderr) => {
        if (err) {
          // Logged once per run of failures: a missing systemd-notify must not flood the log every 15 s.
          if (this.#failures++ === 0) this.#log.error({ err: err.message, stderr: String(stderr).trim().slice(0, 300) }, 'systemd-notify failed: systemd will not see the gateway as ready or alive (is the systemd package installed?)')
        } else {
          if (this.#failures > 0) this.#log.info({ failures: this.#failures }, 'systemd-notify works again')
          this.#failures = 0
        }
        resolve()
      })
    })
  }
}
