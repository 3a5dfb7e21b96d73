/**
 * What the image build, the boot test and the container scripts share: which tools are missing, running a tool
 * with its output kept for the error message, and progress lines with the time since the start.
 */
import { spawn } from 'node:child_process'
import { createWriteStream, existsSync } from 'node:fs'
import { join } from 'node:path'

export class StepFailure extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'StepFailure'
  }
}

/**
 * The Debian packages to install for the tools (tool name, package) not found on PATH or in /usr/sbin and /sbin,
 * or an empty list; the caller says "apt-get install -y ..." with them.
 */
export function missingPackages(tools: ReadonlyArray<readonly [tool: string, pkg: string]>): string[] {
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean).concat(['/usr/sbin', '/sbin'])
  return [...new Set(tools.filter(([tool]) => !dirs.some((dir) => existsSync(join(dir, tool)))).map(([, pkg]) => pkg))]
}

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Written to the tool's stdin. */
  input?: string
  /** The whole output goes to this file too (long tools: mmdebstrap, npm). */
  logFile?: string
}

/** Runs a tool; resolves with its stdout, or rejects naming the command and the end of its output. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    child.stdin?.on('error', () => undefined) // a tool that exits without reading its input
    const log = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : undefined
    let stdout = ''
    let tail = ''
    const keep = (chunk: Buffer) => {
      log?.write(chunk)
      tail = (tail + chunk.toString('utf8')).slice(-4000)
    }
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8')
      keep(chunk)
    })
    child.stderr?.on('data', keep)
    child.on('error', (err) => {
      log?.end()
      reject(new StepFailure(`${command} could not be started (${err.message}): is it installed?`))
    })
    child.on('close', (code, signal) => {
      log?.end()
      if (code === 0) return resolve(stdout)
      const lastLines = tail.trimEnd().split('\n').slice(-15).join('\n')
      reject(new StepFailure(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`})${options.logFile ? `; full output in ${options.logFile}` : ''}:\n${lastLines}`))
    })
    child.stdin?.end(options.input)
  })
}

/** Progress lines "[  12.3 s] ..." measured from `start`. */
export class Progress {
  readonly #start = performance.now()
  readonly #write: (line: string) => void

  constructor(write: (line: string) => void = (line) => process.stdout.write(`${line}\n`)) {
    this.#write = write
  }

  elapsedS(): number {
    return (performance.now() - this.#start) / 1000
  }

  line(text: string): void {
    this.#write(`[${this.elapsedS().toFixed(1).padStart(6)} s] ${text}`)
  }

  /** Runs one named step and prints how long it took; a failure names the step. */
  async step<T>(name: string, work: () => Promise<T>, detail?: (result: T) => string): Promise<T> {
    const began = performance.now()
    this.line(`${name} ...`)
    try {
      const result = await work()
      const took = ((performance.now() - began) / 1000).toFixed(1)
      this.line(`${name}: done in ${took} s${detail ? `, ${detail(result)}` : ''}`)
      return result
    } catch (err) {
      throw new StepFailure(`step "${name}" failed: ${(err as Error).message}`)
    }
  }
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}

/**
 * SHA256SUMS with `lines` ("<hash>  <file>") replacing the earlier lines of the same files and keeping the others,
 * so building one target leaves the other target's checksums in the shared directory. Sorted by file name.
 */
export function mergeSha256Sums(before: string, lines: readonly string[]): string {
  const byFile = new Map<string, string>()
  for (const line of [...before.split('\n'), ...lines]) {
    const match = /^[0-9a-f]{64} [ *](.+)$/.exec(line.trim())
    if (match?.[1]) byFile.set(match[1], line.trim())
  }
  return [...byFile.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, line]) => line).join('\n') + '\n'
}

/** mtools refuse FAT images whose geometry they doubt; ours are made by mkfs.vfat -C and are fine. */
export const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' }

/** Bytes in use in the ext4 at `offset` of an image file (dumpe2fs's block counts), 0 if it cannot be read. */
export async function ext4UsedBytes(image: string, offset: number): Promise<number> {
  const info = await run('dumpe2fs', ['-h', `${image}?offset=${offset}`]).catch(() => '')
  const count = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(info)?.[1] ?? 0)
  return (count('Block count') - count('Free blocks')) * count('Block size')
}
