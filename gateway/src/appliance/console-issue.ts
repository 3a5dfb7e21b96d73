import { mkdir } from 'node:fs/promises'
import { hostname as osHostname, networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import type { Logger } from 'pino'
import type { Clock, ClockTimer } from '#kernel/clock.js'
import { writeFileAtomic } from '../identity/atomic-file.js'
import { pendingSetupCode } from '../web/setup-code.js'

/**
 * The box's console screen (HDMI tty1 and the serial console): agetty shows the files of /run/issue.d/ above its
 * login prompt, and the image links /run/issue.d/50-pbxgw.issue to the file written here. agetty expands
 * backslash escapes in issue files (\n host name, \4 address, ...), so every value is escaped: a host name or
 * code can never turn into an escape.
 */
export interface ConsoleView {
  hostname: string
  /** The box's LAN IPv4 addresses. */
  ipv4: readonly string[]
  /** The setup page's port (443 is left out of the URLs). */
  port: number
  /** SHA-256 of the setup page's certificate, "AB:CD:…". */
  fingerprint256: string
  /** The one-time setup code while the box is unclaimed; undefined once the admin password is set. */
  setupCode: string | undefined
}

/** A value as agetty prints it: backslashes doubled (agetty prints "\\" as "\"), control characters dropped. */
export function escapeIssueText(value: string): string {
  return value.replace(/[\u0000-\u001f\u007f]/g, '').replace(/\\/g, '\\\\')
}

/** The addresses to type into a browser: the mDNS name first, then each LAN IPv4 address. */
export function setupPageUrls(view: Pick<ConsoleView, 'hostname' | 'ipv4' | 'port'>): string[] {
  const port = view.port === 443 ? '' : `:${view.port}`
  const name = view.hostname && !view.hostname.includes('.') ? `${view.hostname}.local` : view.hostname
  return [...(name ? [`https://${name}${port}/`] : []), ...view.ipv4.map((ip) => `https://${ip}${port}/`)]
}

/** The text of the console screen, in agetty's issue format. */
export function renderConsoleIssue(view: ConsoleView): string {
  const rule = '='.repeat(72)
  const pairs = view.fingerprint256.split(':')
  const fingerprint = [pairs.slice(0, 16).join(':'), pairs.slice(16).join(':')].filter(Boolean)
  const urls = setupPageUrls(view)
  const lines = [
    rule,
    `  PBX presence gateway  ${view.hostname}`,
    '',
    '  Setup page (open it in a browser on the same network):',
    ...(urls.length > 0 ? urls.map((url) => `      ${url}`) : ['      (no network address yet: check the network cable and the DHCP server)']),
    '',
    '  The browser warns about the certificate: accept it only if its SHA-256',
    '  fingerprint is this one:',
    ...fingerprint.map((part) => `      ${part}`),
    '',
    ...(view.setupCode
      ? [
          '  The setup page asks for this one-time setup code on the first visit:',
          `      ${view.setupCode}`,
        ]
      : [
          '  This box is set up: sign in on the setup page with its admin password.',
          '  Lost the password? A factory reset (Status page, or the recovery steps',
          '  in the installation guide) wipes the box and shows a new setup code here.',
        ]),
    '',
    '  Wrong network setting? Restart, hold the space bar while it starts and',
    '  choose "network back to DHCP" (Raspberry Pi: add pbxgw.network=dhcp to',
    '  cmdline.txt on the SD card). The installation guide has the details.',
    rule,
    '',
  ]
  return lines.map(escapeIssueText).join('\n') + '\n'
}

/** The LAN IPv4 addresses of the box, loopback left out, in interface order. */
export function lanIpv4Addresses(): string[] {
  const found: string[] = []
  for (const list of Object.values(networkInterfaces())) for (const address of list ?? []) if (address.family === 'IPv4' && !address.internal) found.push(address.address)
  return found
}

export interface ConsoleIssueWriterDeps {
  /** Where to write, e.g. /run/pbx-gateway/console.issue. */
  file: string
  dataDir: string
  port: number
  fingerprint256: string
  clock: Clock
  logger: Logger
  /** How often the addresses are read again (DHCP changes them); default 5 s. */
  pollMs?: number
  hostname?: () => string
  addresses?: () => string[]
}

/**
 * Keeps the console screen current: written at start, when the box is claimed or reset (`refresh()`), and when
 * the host name or addresses change (polled: nothing tells a process about new addresses without netlink).
 */
export class ConsoleIssueWriter {
  readonly #deps: ConsoleIssueWriterDeps
  readonly #log: Logger
  #timer: ClockTimer | undefined
  #written: string | undefined
  #running = false
  #queue: Promise<void> = Promise.resolve()

  constructor(deps: ConsoleIssueWriterDeps) {
    this.#deps = deps
    this.#log = deps.logger.child({ component: 'console-screen' })
  }

  static defaultFile(env: NodeJS.ProcessEnv): string | undefined {
    // systemd sets RUNTIME_DIRECTORY from RuntimeDirectory=pbx-gateway (several are separated by ':').
    const dir = env.RUNTIME_DIRECTORY?.split(':')[0]
    return dir ? join(dir, 'console.issue') : undefined
  }

  async start(): Promise<void> {
    if (this.#running) return
    this.#running = true
    await this.refresh()
    this.#schedule()
  }

  stop(): void {
    this.#running = false
    this.#deps.clock.clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Renders the screen again and writes it if it changed (one write at a time). */
  refresh(): Promise<void> {
    this.#queue = this.#queue.then(() => this.#write()).catch((err: unknown) => {
      this.#log.error({ err: (err as Error).message, file: this.#deps.file }, 'could not write the console screen: the console shows no setup address')
    })
    return this.#queue
  }

  async #write(): Promise<void> {
    const text = renderConsoleIssue({
      hostname: (this.#deps.hostname ?? osHostname)(),
      ipv4: (this.#deps.addresses ?? lanIpv4Addresses)(),
      port: this.#deps.port,
      fingerprint256: this.#deps.fingerprint256,
      setupCode: await pendingSetupCode(this.#deps.dataDir),
    })
    if (text === this.#written) return
    await mkdir(dirname(this.#deps.file), { recursive: true })
    // 0644: agetty runs as root and reads it; the setup code is on the screen for whoever stands at the box anyway.
    await writeFileAtomic(this.#deps.file, text, 0o644)
    this.#written = text
    this.#log.info({ file: this.#deps.file }, 'console screen written')
  }

  #schedule(): void {
    this.#timer = this.#deps.clock.setTimeout(() => {
      if (!this.#running) return
      void this.refresh().finally(() => { if (this.#running) this.#schedule() })
    }, this.#deps.pollMs ?? 5000)
  }
}
