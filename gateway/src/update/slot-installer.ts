import { spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'

/**
 * The install and boot-slot side of an update, behind one small interface: the update agent knows nothing of RAUC,
 * and host tests drive it with an in-process fake. The image wires RaucSlotInstaller in.
 */
export interface SlotInstaller {
  /**
   * Checks the bundle's signature against the keys in the box's image and reads the version it carries; rejects
   * with the reason in words.
   */
  verify(bundlePath: string): Promise<{ version: string | undefined }>
  /** Writes the bundle to the inactive slot and makes it the next boot; progress 0..100 with what it is doing. */
  install(bundlePath: string, onProgress: (percent: number, what: string) => void): Promise<void>
  /** The slot the box booted from ("A" or "B"). */
  bootedSlot(): Promise<string>
  /** Marks the booted slot good, so the boot counter stops counting down. */
  markGood(): Promise<void>
  reboot(): Promise<void>
}

export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

/** Runs a program without a shell; `onLine` sees each stdout line as it comes. The OS edge: tests replace it. */
export type CommandRunner = (command: string, args: readonly string[], onLine?: (line: string) => void) => Promise<CommandResult>

export const spawnRunner: CommandRunner = (command, args, onLine) => new Promise((resolve, reject) => {
  const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  let pending = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) onLine?.(line)
  })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  child.on('error', reject)
  child.on('close', (code) => {
    if (pending) onLine?.(pending)
    resolve({ code: code ?? -1, stdout, stderr })
  })
})

/** What `rauc status --output-format=json` says (the fields we read). */
interface RaucStatus {
  booted?: unknown
  slots?: unknown
}

export class SlotInstallerError extends Error {
  constructor(readonly code: 'UPDATE_SIGNATURE' | 'UPDATE_INSTALL' | 'UPDATE_STATUS' | 'UPDATE_MARK_GOOD' | 'UPDATE_REBOOT', message: string) {
    super(message)
    this.name = 'SlotInstallerError'
  }
}

/** The last line rauc wrote to stderr, which names the problem ("signature verification failed: …"). */
function raucReason(result: CommandResult): string {
  const lines = `${result.stderr}\n${result.stdout}`.split('\n').map((l) => l.trim()).filter(Boolean)
  return (lines[lines.length - 1] ?? `exit code ${result.code}`).slice(0, 400)
}

/**
 * RAUC: `rauc info --keyring` checks a bundle's signature against the image's keyring before anything is written,
 * `rauc install` writes the inactive slot (and checks the signature again against the system keyring), `rauc status`
 * names the booted slot, `rauc status mark-good` ends the boot counting. No shell: arguments are passed as they are.
 */
export class RaucSlotInstaller implements SlotInstaller {
  readonly #keyring: string
  readonly #run: CommandRunner
  readonly #rauc: string

  readonly #rebootRequestFile: string | undefined
  readonly #cmdline: string

  /**
   * `rebootRequestFile`: on the appliance the gateway runs without privileges, so it reboots by writing this file,
   * which a root unit watches (firmware/systemd/pbxgw-update-reboot.path); without it, `systemctl reboot`.
   */
  constructor(options: { keyring: string; rauc?: string; rebootRequestFile?: string; cmdline?: string }, deps: { run?: CommandRunner } = {}) {
    this.#keyring = options.keyring
    this.#rauc = options.rauc ?? 'rauc'
    this.#run = deps.run ?? spawnRunner
    this.#rebootRequestFile = options.rebootRequestFile
    this.#cmdline = options.cmdline ?? '/proc/cmdline'
  }

  async verify(bundlePath: string): Promise<{ version: string | undefined }> {
    const result = await this.#run(this.#rauc, ['info', `--keyring=${this.#keyring}`, '--output-format=json', '--', bundlePath])
    if (result.code !== 0) throw new SlotInstallerError('UPDATE_SIGNATURE', `the bundle is not signed by a key this box trusts (rauc info: ${raucReason(result)})`)
    try {
      const info = JSON.parse(result.stdout) as { version?: unknown }
      return { version: typeof info.version === 'string' && /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(info.version) ? info.version : undefined }
    } catch {
      return { version: undefined }
    }
  }

  async install(bundlePath: string, onProgress: (percent: number, what: string) => void): Promise<void> {
    // rauc install prints "installing `…`:  20% Checking bundle" lines as it goes.
    const result = await this.#run(this.#rauc, ['install', '--', bundlePath], (line) => {
      const match = /(\d{1,3})%\s+(.*)$/.exec(line)
      if (match) onProgress(Math.min(100, Number(match[1])), match[2]!.trim())
    })
    if (result.code !== 0) throw new SlotInstallerError('UPDATE_INSTALL', `rauc install failed: ${raucReason(result)}`)
  }

  async bootedSlot(): Promise<string> {
    // The boot loader names the slot on the kernel command line (rauc.slot=A), which is where RAUC itself reads it:
    // no D-Bus round trip at start, when RAUC's service may still be starting on a slow box.
    const fromCmdline = slotFromCmdline(await readFile(this.#cmdline, 'utf8').catch(() => ''))
    if (fromCmdline) return fromCmdline
    const result = await this.#run(this.#rauc, ['status', '--output-format=json'])
    if (result.code !== 0) throw new SlotInstallerError('UPDATE_STATUS', `rauc status failed: ${raucReason(result)}`)
    return parseBootedSlot(result.stdout)
  }

  async markGood(): Promise<void> {
    const result = await this.#run(this.#rauc, ['status', 'mark-good'])
    if (result.code !== 0) throw new SlotInstallerError('UPDATE_MARK_GOOD', `rauc status mark-good failed: ${raucReason(result)}`)
  }

  async reboot(): Promise<void> {
    if (this.#rebootRequestFile) {
      try {
        await writeFile(this.#rebootRequestFile, `${new Date().toISOString()}\n`)
      } catch (err) {
        throw new SlotInstallerError('UPDATE_REBOOT', `could not ask for the reboot (${this.#rebootRequestFile}): ${(err as Error).message}`)
      }
      return
    }
    const result = await this.#run('systemctl', ['reboot'])
    if (result.code !== 0) throw new SlotInstallerError('UPDATE_REBOOT', `systemctl reboot failed: ${raucReason(result)}`)
  }
}

/**
 * The booted slot's boot name ("A"/"B") from `rauc status --output-format=json`: `booted` is the boot name; older
 * output without it is read from the slot whose state is "booted".
 */
export function parseBootedSlot(json: string): string {
  let status: RaucStatus
  try {
    status = JSON.parse(json) as RaucStatus
  } catch {
    throw new SlotInstallerError('UPDATE_STATUS', 'rauc status did not answer JSON: is this rauc 1.5 or newer (--output-format=json)?')
  }
  if (typeof status.booted === 'string' && status.booted !== '') return status.booted
  if (Array.isArray(status.slots)) {
    for (const entry of status.slots as unknown[]) {
      if (!entry || typeof entry !== 'object') continue
      for (const slot of Object.values(entry as Record<string, unknown>)) {
        const s = slot as { state?: unknown; bootname?: unknown }
        if (s.state === 'booted' && typeof s.bootname === 'string') return s.bootname
      }
    }
  }
  throw new SlotInstallerError('UPDATE_STATUS', 'rauc status names no booted slot: the box was not started from a RAUC slot (check the kernel command line rauc.slot= or the bootloader setup)')
}

/** The last rauc.slot= on a kernel command line (A, B, or a slot name), if any. */
export function slotFromCmdline(cmdline: string): string | undefined {
  const values = cmdline.split(/\s+/).filter((word) => word.startsWith('rauc.slot=')).map((word) => word.slice('rauc.slot='.length))
  const last = values.at(-1)
  return last && /^[A-Za-z0-9._-]{1,32}$/.test(last) ? last : undefined
}
