/**
 * Building the repo's Dockerfile without a Docker engine or Docker Hub: the Debian base is made here with
 * mmdebstrap and imported into podman's storage, buildah builds, and the host's CA bundle goes in as a build
 * secret. Shared by container/build.ts and container/test.ts.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { missingPackages } from '../firmware/image/steps.js'
import { fileURLToPath } from 'node:url'
import { dirname, resolve } from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const DEFAULT_TAG = 'localhost/pbx-presence:dev'
export const DEFAULT_BASE = 'localhost/debian-bookworm:latest'

const started = Date.now()
/** A progress line with the seconds since the script started. */
export function progress(message: string): void {
  process.stdout.write(`container: [${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}\n`)
}

/** The script's options, or its help (exit 0) or a bad command line (exit 2, with where to look). */
export function parseCommandLine<const O extends NonNullable<ParseArgsConfig['options']>>(script: string, help: string, options: O): ReturnType<typeof parseArgs<{ options: O }>>['values'] {
  const args = process.argv.slice(2)
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(help)
    process.exit(0)
  }
  try {
    return parseArgs({ args, options }).values
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\nSee npm run ${script} -- --help\n`)
    process.exit(2)
  }
}

export interface RunResult { code: number; stdout: string; stderr: string }

/** Runs a command to its end; `stream` copies its output to ours as it comes (long builds show progress). */
export function run(command: string, args: readonly string[], options: { stream?: boolean; input?: NodeJS.ReadableStream; cwd?: string } = {}): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(command, args, { cwd: options.cwd ?? REPO_ROOT, stdio: [options.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString(); if (options.stream) process.stdout.write(chunk) })
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); if (options.stream) process.stderr.write(chunk) })
    if (options.input && child.stdin) options.input.pipe(child.stdin)
    child.on('error', (err) => resolvePromise({ code: 127, stdout, stderr: `${stderr}${command}: ${err.message}\n` }))
    child.on('close', (code) => resolvePromise({ code: code ?? 1, stdout, stderr }))
  })
}

/** Like run, but a failure ends the script with the command's own words and the next step. */
export async function must(command: string, args: readonly string[], what: string, options: { stream?: boolean; cwd?: string } = {}): Promise<string> {
  const result = await run(command, args, options)
  if (result.code !== 0) {
    throw new Error(`${what} failed (${command} ${args.join(' ')} exited ${result.code})${options.stream ? '' : `:\n${result.stderr.trim() || result.stdout.trim()}`}`)
  }
  return result.stdout
}

/**
 * Flags every container this runs needs on our machines (podman's global ones go before the subcommand):
 * - cgroups are hybrid (v1 controllers plus a v2 tree that holds hugetlb) and crun refuses that ("cgroups in
 *   hybrid mode not supported"): runc (Debian package runc) takes it.
 * - root here lacks CAP_SYS_RESOURCE, so podman's default rlimits (nofile 1048576) cannot be set ("error
 *   setting rlimit ... operation not permitted"): ask for the host's own nofile limit and a nproc that fits.
 */
export function runtimeFlags(): { runtime: string[]; ulimits: string[] } {
  const hybrid = existsSync('/sys/fs/cgroup/unified/cgroup.controllers') && readFileSync('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').trim() !== ''
  const limits = existsSync('/proc/self/limits') ? readFileSync('/proc/self/limits', 'utf8') : ''
  const hard = (name: string): number | undefined => {
    const match = new RegExp(`^${name}\\s+\\S+\\s+(\\d+)`, 'm').exec(limits)
    return match?.[1] ? Number(match[1]) : undefined
  }
  const nofile = Math.min(hard('Max open files') ?? 1024, 65536)
  // 65536 processes was refused and 32768 taken on these machines; the services need a few dozen.
  const nproc = Math.min(hard('Max processes') ?? 4096, 16384)
  return { runtime: hybrid ? ['--runtime', 'runc'] : [], ulimits: ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`] }
}

export async function imageExists(image: string): Promise<boolean> {
  return (await run('podman', ['image', 'exists', image])).code === 0
}

/** The tools this needs, with the Debian package that has each. */
export function checkTools(tools: ReadonlyArray<readonly [string, string]>): void {
  const missing = missingPackages(tools)
  if (missing.length) throw new Error(`missing tools: run apt-get install -y ${missing.join(' ')}`)
}

/**
 * The CA bundle the host's npm trusts. On our machines HTTPS leaves through an inspecting proxy whose CA
 * (sandboxing-egress-ca) is only in the host's bundle, so Debian's ca-certificates in a fresh base cannot
 * verify the registry. npm's own cafile first, then NODE_EXTRA_CA_CERTS, then Debian's bundle.
 */
export async function hostCaBundle(): Promise<string | undefined> {
  const npmCafile = (await run('npm', ['config', 'get', 'cafile'])).stdout.trim()
  for (const candidate of [npmCafile, process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt']) {
    if (candidate && candidate !== 'null' && candidate !== 'undefined' && existsSync(candidate)) return candidate
  }
  return undefined
}

/** Makes a minimal Debian bookworm root with mmdebstrap (Debian's mirrors only) and imports it as `image`. */
export async function makeDebianBase(image: string): Promise<void> {
  checkTools([['mmdebstrap', 'mmdebstrap'], ['podman', 'podman']])
  const sources = [
    'deb http://deb.debian.org/debian bookworm main',
    'deb http://deb.debian.org/debian bookworm-updates main',
    'deb http://deb.debian.org/debian-security bookworm-security main',
  ]
  const debootstrap = spawn('mmdebstrap', ['--variant=minbase', '--quiet', 'bookworm', '-', ...sources], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  debootstrap.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<number>((r) => debootstrap.on('close', (code) => r(code ?? 1)))
  const imported = await run('podman', ['import', '--quiet', '-', image], { input: debootstrap.stdout })
  const code = await exited
  if (code !== 0) throw new Error(`mmdebstrap could not make the Debian base (exit ${code}):\n${stderr.trim()}`)
  if (imported.code !== 0) throw new Error(`podman import of the Debian base failed:\n${imported.stderr.trim()}`)
}

export interface BuildOptions {
  tag: string
  /** BASE_IMAGE for the Dockerfile; made with mmdebstrap when it is DEFAULT_BASE and missing. */
  base: string
  rebuildBase: boolean
  /** CA bundle passed as the ca-bundle build secret; undefined: none. */
  cafile: string | undefined
  /** Reuse buildah's layer cache (a rebuild with unchanged inputs takes seconds). */
  layers: boolean
}

export interface BuildFigures { baseSeconds: number | undefined; buildSeconds: number; sizeBytes: number }

export async function buildImage(options: BuildOptions): Promise<BuildFigures> {
  checkTools([['buildah', 'buildah'], ['podman', 'podman'], ...(runtimeFlags().runtime.length ? [['runc', 'runc'] as [string, string]] : [])])
  let baseSeconds: number | undefined
  if (options.rebuildBase || (options.base === DEFAULT_BASE && !(await imageExists(options.base)))) {
    progress(`making the Debian bookworm base ${options.base} with mmdebstrap (about a minute)`)
    const t0 = Date.now()
    await makeDebianBase(options.base)
    baseSeconds = (Date.now() - t0) / 1000
    progress(`base ${options.base} made in ${baseSeconds.toFixed(1)} s`)
  } else if (!(await imageExists(options.base)) && !options.base.includes('/')) {
    throw new Error(`base image ${options.base} is not in podman's storage; give a full name or leave --base out`)
  }
  const { runtime, ulimits } = runtimeFlags()
  const args = ['bud', ...runtime, ...ulimits, '--format', 'docker', `--layers=${options.layers}`, '--build-arg', `BASE_IMAGE=${options.base}`, '--tag', options.tag, '--file', 'Dockerfile']
  if (options.cafile) args.push('--secret', `id=ca-bundle,src=${options.cafile}`)
  args.push('.')
  progress(`buildah ${args.join(' ')}`)
  const t0 = Date.now()
  await must('buildah', args, 'the image build', { stream: true })
  const buildSeconds = (Date.now() - t0) / 1000
  const sizeBytes = Number((await must('podman', ['image', 'inspect', '--format', '{{.Size}}', options.tag], 'reading the image size')).trim())
  progress(`image ${options.tag} built in ${buildSeconds.toFixed(1)} s, ${(sizeBytes / 1e6).toFixed(1)} MB`)
  return { baseSeconds, buildSeconds, sizeBytes }
}
