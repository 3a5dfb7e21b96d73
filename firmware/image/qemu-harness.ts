/**
 * The QEMU side of the image tests (boot test, update test): the x86-64 VM under TCG with OVMF on a throw-away
 * overlay, user-mode networking restricted to forwards onto loopback, the serial log and monitor socket, and the
 * setup page's API as the host reaches it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { Agent, fetch } from 'undici'
import { partitionOffsets } from './layout.js'
import type { QemuMachine } from './boot-test-pi.js'
import { run, type Progress } from './steps.js'

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'
// The gateway's line on /dev/console ("enter the setup code:  CODE") or, where /dev/console is the screen (the Pi's
// tty1), the console screen agetty shows on the serial port ("setup code on the first visit:" and the code below).
export const SETUP_CODE = /setup code(?::| on the first visit:)\s+([2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4})/
/** Where the guest finds the host's services: QEMU's guestfwd answers connections to this address. */
export const HOST_IN_GUEST = '10.0.2.100'

export class CheckFailure extends Error {}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))))
    })
  })
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface Vm {
  child: ChildProcess
  exited: Promise<number | null>
  serialLog: string
  monitor: string
}

/** Host ports the guest reaches at HOST_IN_GUEST:same port (the relay's HTTPS and mqtts, the OSBiz simulator's CSTA). */
export type GuestForwards = readonly number[]

/** The x86-64 VM: q35 with OVMF (its variables copied to `vars`), booting systemd-boot from the ESP. */
export function vmMachine(vars: string): QemuMachine {
  return {
    binary: 'qemu-system-x86_64', pkg: 'qemu-system-x86',
    args: ['-machine', 'q35', '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, '-drive', `if=pflash,format=raw,unit=1,file=${vars}`, '-vga', 'std'],
    dataOffsetBytes: partitionOffsets().find((p) => p.name === 'data')?.offsetBytes ?? 0,
  }
}

export function startVm(work: string, overlay: string, machine: QemuMachine, port: number, boot: number, forwards: GuestForwards): Vm {
  const serialLog = join(work, `serial-boot${boot}.log`)
  const monitor = join(work, 'monitor.sock')
  const args = [
    // One TCG thread for both vCPUs: with a thread per vCPU a guest kernel patching its own code (static keys) while
    // the other vCPU runs it was seen to stop with "Oops: int3" in sched_clock_cpu and a kernel panic (boot 2 of a run).
    '-accel', 'tcg,thread=single', ...machine.args, '-m', '1024', '-smp', '2', '-display', 'none', '-no-user-config', '-nodefaults',
    '-drive', `if=virtio,format=qcow2,file=${overlay}`,
    // restrict=on: the guest reaches only these forwards. cmd: (socat per connection) rather than a tcp: chardev,
    // which QEMU opens once at start and shares between all guest connections (and loses when the relay restarts).
    '-netdev', [`user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:443`, ...forwards.map((p) => `guestfwd=tcp:${HOST_IN_GUEST}:${p}-cmd:socat - TCP:127.0.0.1:${p}`)].join(','),
    '-device', 'virtio-net-pci,netdev=n0',
    '-device', 'virtio-rng-pci',
    '-serial', `file:${serialLog}`,
    '-monitor', `unix:${monitor},server,nowait`,
  ]
  const child = spawn(machine.binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString('utf8') })
  const exited = new Promise<number | null>((resolveExit) => {
    child.on('exit', (code) => {
      if (code !== 0 && stderr) process.stderr.write(`qemu: ${stderr.trim()}\n`)
      resolveExit(code)
    })
    child.on('error', (err) => {
      process.stderr.write(`${machine.binary} could not be started: ${err.message} (apt-get install -y ${machine.pkg})\n`)
      resolveExit(-1)
    })
  })
  return { child, exited, serialLog, monitor }
}

export async function monitorCommand(socket: string, command: string): Promise<void> {
  await new Promise<void>((resolveSent, reject) => {
    const client = connect(socket, () => {
      client.write(`${command}\n`)
      setTimeout(() => { client.end(); resolveSent() }, 300)
    })
    client.on('error', reject)
  })
}

const agent = new Agent({ connect: { rejectUnauthorized: false } })

export interface Answer { status: number; body: Record<string, unknown>; cookie: string | undefined }

export async function api(port: number, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, cookie?: string, csrf?: string): Promise<Answer> {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (cookie) headers.cookie = cookie
  if (csrf) headers['x-csrf-token'] = csrf
  const response = await fetch(`https://127.0.0.1:${port}${path}`, { method, headers, body: body === undefined ? null : JSON.stringify(body), dispatcher: agent, signal: AbortSignal.timeout(15_000) })
  const text = await response.text()
  let parsed: Record<string, unknown> = {}
  try { parsed = JSON.parse(text) as Record<string, unknown> } catch { parsed = { text } }
  const setCookie = response.headers.get('set-cookie')
  return { status: response.status, body: parsed, cookie: setCookie ? setCookie.split(';')[0] : undefined }
}

/** Polls the setup page until it answers; rejects if QEMU exits first or the deadline passes. */
export async function waitForSetupPage(vm: Vm, port: number, timeoutS: number): Promise<Answer> {
  const deadline = Date.now() + timeoutS * 1000
  let exited = false
  void vm.exited.then(() => { exited = true })
  let last = 'no answer yet'
  while (Date.now() < deadline) {
    if (exited) throw new CheckFailure('QEMU exited before the setup page answered')
    const panic = /Kernel panic - not syncing: [^\r\n]*/.exec(await readFile(vm.serialLog, 'utf8').catch(() => ''))
    if (panic) throw new CheckFailure(`the guest kernel stopped: "${panic[0]}" (the serial log has the trace)`)
    try {
      const answer = await api(port, 'GET', '/api/session')
      if (answer.status === 200) return answer
      last = `HTTP ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(1000)
  }
  throw new CheckFailure(`the setup page did not answer within ${timeoutS} s (last: ${last})`)
}

/** The certificate the setup page presents, as the browser would see it. */
export async function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolveFp, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const der = socket.getPeerCertificate().raw
      socket.end()
      resolveFp(new X509Certificate(der).fingerprint256)
    })
    socket.on('error', reject)
  })
}

export async function waitForSerial(file: string, pattern: RegExp, timeoutS: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutS * 1000
  while (Date.now() < deadline) {
    const text = existsSync(file) ? await readFile(file, 'utf8') : ''
    const match = pattern.exec(text)
    if (match) return match
    await sleep(500)
  }
  throw new CheckFailure(`the serial console did not show ${pattern} within ${timeoutS} s`)
}

export async function powerDown(vm: Vm, timeoutS: number): Promise<'clean' | 'forced'> {
  await monitorCommand(vm.monitor, 'system_powerdown')
  const done = await Promise.race([vm.exited.then(() => true), sleep(timeoutS * 1000).then(() => false)])
  if (done) return 'clean'
  await monitorCommand(vm.monitor, 'quit').catch(() => undefined)
  await vm.exited
  return 'forced'
}

/** At the end of a test: a guest still running is powered down (which writes its journal to disk), else killed. */
export async function shutDown(vm: Vm | undefined, timeoutS: number): Promise<void> {
  if (!vm) return
  if (vm.child.exitCode === null) await powerDown(vm, timeoutS).catch(() => { vm.child.kill('SIGTERM') })
  await vm.exited
}

/** Copies the guest's journal out of the data partition of the overlay (debugfs reads ext4 at an offset, no mount). */
export async function guestJournal(work: string, overlay: string, dataOffsetBytes: number): Promise<string> {
  const raw = join(work, 'disk-after.raw')
  await run('qemu-img', ['convert', '-O', 'raw', overlay, raw])
  const target = join(work, 'journal')
  await rm(target, { recursive: true, force: true })
  await mkdir(target)
  await run('debugfs', ['-R', `rdump /log/journal ${target}`, `${raw}?offset=${dataOffsetBytes}`])
  await rm(raw)
  return join(target, 'journal')
}

/** Polls every second until `probe` gives a value; fails naming what it waited for and the last thing seen. */
export async function until<T>(what: string, timeoutS: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutS * 1000
  let last = ''
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (err) {
      last = `: ${(err as Error).message}`
    }
    await sleep(1000)
  }
  throw new CheckFailure(`${what} did not happen within ${timeoutS} s${last}`)
}


/**
 * The named checks of an image test: each prints PASS with its time or FAIL with the reason and the serial log to
 * read, and a failure stops the test (CheckFailure).
 */
export class CheckList {
  readonly results: string[] = []
  readonly #progress: Progress
  readonly #serialLog: () => string | undefined

  constructor(progress: Progress, serialLog: () => string | undefined) {
    this.#progress = progress
    this.#serialLog = serialLog
  }

  async check<T>(name: string, work: () => Promise<T>): Promise<T> {
    const began = performance.now()
    try {
      const value = await work()
      this.#record(`PASS ${name} (${((performance.now() - began) / 1000).toFixed(1)} s; at ${this.#progress.elapsedS().toFixed(1)} s)`)
      return value
    } catch (err) {
      const line = `FAIL ${name}: ${(err as Error).message}; serial log ${this.#serialLog() ?? 'not started'}`
      this.#record(line)
      throw new CheckFailure(line)
    }
  }

  #record(line: string): void {
    this.results.push(line)
    this.#progress.line(line)
  }
}
