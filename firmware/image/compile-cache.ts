/**
 * Node's compile cache for the box's first boot. Under QEMU's TCG (and on a Pi's SD card) compiling the bundle
 * and its modules is most of the gateway's start; the unit points NODE_COMPILE_CACHE at /var/cache/pbx-gateway, so
 * every later start reuses it, but the installer's first boot would still pay. The build runs the gateway once
 * in the new root (chroot, same Node, same path, same V8 flags: V8 refuses a cache made with other flags) until
 * its setup page listens, and ships the cache it wrote on the data partition.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { StepFailure } from './steps.js'

const UNIT = 'usr/lib/systemd/system/pbx-gateway.service'
const WARM_DIR = '/tmp/pbxgw-compile-cache-warm-up'

/**
 * How the unit starts the gateway: the Node options on its ExecStart, its Environment= lines and the
 * NODE_COMPILE_CACHE among them. Shared with bench/gateway-memory.ts, which runs the gateway the same way.
 */
export function unitNodeLaunch(unit: string): { nodeArgs: string[]; env: Record<string, string>; cacheDir: string } {
  const exec = /^ExecStart=(\S+\/node)((?:\s+--\S+)*)\s+dist\/gateway\.js/m.exec(unit)
  if (!exec) throw new StepFailure('pbx-gateway.service has no ExecStart=…/node [options] dist/gateway.js line: the compile cache cannot match it')
  const env: Record<string, string> = {}
  for (const match of unit.matchAll(/^Environment=(?:"([^"]*)"|(\S+))\s*$/gm)) {
    const pair = match[1] ?? match[2] ?? ''
    const at = pair.indexOf('=')
    if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1)
  }
  const cacheDir = env.NODE_COMPILE_CACHE
  if (!cacheDir) throw new StepFailure('pbx-gateway.service sets no Environment=NODE_COMPILE_CACHE=…: nothing to warm up')
  return { nodeArgs: (exec[2] ?? '').split(/\s+/).filter(Boolean), env, cacheDir }
}

async function dirBytes(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0
  let bytes = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    files += 1
    bytes += (await stat(join(entry.parentPath, entry.name))).size
  }
  return { files, bytes }
}

/** Runs the gateway in `root` until its setup page listens, then stops it; returns what the cache holds. */
export async function warmCompileCache(root: string, timeoutMs = 180_000): Promise<{ files: number; bytes: number; seconds: number }> {
  const { nodeArgs, env, cacheDir } = unitNodeLaunch(await readFile(join(root, UNIT), 'utf8'))
  const warm = join(root, WARM_DIR)
  await rm(warm, { recursive: true, force: true })
  await mkdir(join(warm, 'data'), { recursive: true })
  // Nothing to reach: no relay, no PBX; the setup page on a free port of the build machine's loopback.
  await writeFile(join(warm, 'gateway.json'), JSON.stringify({
    relay: { url: 'mqtts://relay.invalid:8883' }, dataDir: `${WARM_DIR}/data`, logLevel: 'info', web: { host: '127.0.0.1', port: 0 }, connectors: [],
  }))
  const began = performance.now()
  const child = spawn(existsSync('/usr/sbin/chroot') ? '/usr/sbin/chroot' : 'chroot', [root, '/bin/sh', '-c', `cd /opt/pbx-gateway && exec /opt/pbx-gateway/node/bin/node ${nodeArgs.join(' ')} dist/gateway.js --config ${WARM_DIR}/gateway.json`], {
    env: { ...env, PATH: '/usr/bin:/bin', HOME: '/nonexistent' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const listening = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new StepFailure(`the gateway did not open its setup page within ${timeoutMs / 1000} s in the new root:\n${output.slice(-2000)}`)), timeoutMs)
    const seen = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-20_000)
      if (/setup page listening/.test(output)) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout.on('data', seen)
    child.stderr.on('data', seen)
    child.once('error', (err) => { clearTimeout(timer); reject(new StepFailure(`chroot could not run the gateway: ${err.message}`)) })
    child.once('exit', (code, signal) => { clearTimeout(timer); reject(new StepFailure(`the gateway ended (${signal ?? `exit ${code}`}) before its setup page listened:\n${output.slice(-2000)}`)) })
  })
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()))
  try {
    await listening
  } finally {
    // Node writes the cache as the process ends; SIGTERM is the gateway's normal stop.
    if (child.exitCode === null) child.kill('SIGTERM')
    await exited
    await rm(warm, { recursive: true, force: true })
  }
  const cache = join(root, cacheDir)
  if (!existsSync(cache)) throw new StepFailure(`the gateway ran but wrote no compile cache in ${cacheDir}`)
  // The service user (pbxgw, from sysusers) owns /var/cache/pbx-gateway on the box (CacheDirectory=).
  const passwd = await readFile(join(root, 'etc', 'passwd'), 'utf8')
  const user = /^pbxgw:[^:]*:(\d+):(\d+):/m.exec(passwd)
  if (!user) throw new StepFailure('no pbxgw user in the new root: systemd-sysusers must run before the compile cache is made')
  const [uid, gid] = [Number(user[1]), Number(user[2])]
  const top = join(root, cacheDir.split('/').slice(0, 4).join('/')) // /var/cache/pbx-gateway
  await chown(top, uid, gid)
  for (const entry of await readdir(top, { withFileTypes: true, recursive: true })) await chown(join(entry.parentPath, entry.name), uid, gid)
  const written = await dirBytes(cache)
  if (written.files === 0) throw new StepFailure(`the gateway ran but its compile cache in ${cacheDir} is empty: it must flush the cache once its setup page listens (gateway/src/main.ts)`)
  return { ...written, seconds: (performance.now() - began) / 1000 }
}
