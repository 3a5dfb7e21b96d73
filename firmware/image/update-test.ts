/**
 * The A/B update test: the VM image under QEMU (TCG, OVMF) is updated through its setup page as an installer without
 * a relay would do it, and must survive what goes wrong in the field:
 *   1. v1 boots into slot A; the admin password is set with the setup code
 *   2. a bundle signed with another key is refused, nothing is written
 *   3. v2 is uploaded: checked, installed into slot B, the box reboots into it, marks it good and reports healthy
 *   4. power is cut (QEMU killed) while v3 installs: the box boots v2 again
 *   5. v3, whose gateway exits at start, is installed after that restart: the box tries it three times (systemd-boot's
 *      boot counter), falls back to v2 by itself, and the setup page says "rolled back" with the reason
 * Each step prints its time. v3 and the foreign bundle are made here from the v2 bundle (unsquashfs, debugfs on the
 * root image, rauc bundle): no mounts.
 */
import { existsSync } from 'node:fs'
import { copyFile, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { cpus, homedir, loadavg, tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Agent, fetch } from 'undici'
import { bundleManifest, releaseKeys, VM_COMPATIBLE, type ReleaseKeys } from './bundle.js'
import { VM_IMAGE_BASENAME } from './layout.js'
import { api, CheckFailure, CheckList, freePort, guestJournal, monitorCommand, OVMF_VARS, SETUP_CODE, shutDown, sleep, startVm, until, vmMachine, waitForSerial, waitForSetupPage, type Vm } from './qemu-harness.js'
import { missingPackages, Progress, run, StepFailure } from './steps.js'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const PASSWORD = 'update test admin password 7'

const HELP = `npm run image:update-test [-- options]

Updates the VM image under QEMU through its setup page: a foreign-signed bundle refused, v2 installed
into slot B and marked good, power cut during an install, a broken v3 rolled back by boot counting.

  --image FILE       v1 image (default dist/images/v1/${VM_IMAGE_BASENAME}.qcow2)
  --bundle FILE      v2 bundle (default dist/images/v2/${VM_IMAGE_BASENAME}-2.0.0.raucb)
  --release-keys DIR the keys the image trusts (default ~/.config/pbx-gateway/release-keys)
  --boot-timeout S   seconds to wait for the setup page per boot (default 600)
  --keep             keep the work directory (overlay, serial log)
  --help             this text

Make the inputs with:
  npm run image -- --target vm --version 1.0.0 --formats raw,qcow2 --out dist/images/v1
  npm run image -- --target vm --version 2.0.0 --bundle --formats raw --out dist/images/v2
`

const uploadAgent = new Agent({ connect: { rejectUnauthorized: false }, bodyTimeout: 0, headersTimeout: 0 })

interface Admin { cookie: string | undefined; csrf: string | undefined }
interface UpdateView { runningVersion: string; slot: string | null; latest: { state: string; version?: string; reason?: string; percent?: number } | null }

async function signIn(port: number): Promise<Admin> {
  const login = await api(port, 'POST', '/api/login', { password: PASSWORD })
  if (login.status !== 200) throw new CheckFailure(`sign-in answered ${login.status}: ${JSON.stringify(login.body)}`)
  return { cookie: login.cookie, csrf: typeof login.body.csrfToken === 'string' ? login.body.csrfToken : undefined }
}

async function updateView(port: number, admin: Admin): Promise<UpdateView> {
  const answer = await api(port, 'GET', '/api/update', undefined, admin.cookie)
  if (answer.status !== 200) throw new CheckFailure(`GET /api/update answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)}`)
  return answer.body as unknown as UpdateView
}

async function upload(port: number, admin: Admin, bundle: string): Promise<{ status: number; body: string }> {
  const body = await readFile(bundle)
  const response = await fetch(`https://127.0.0.1:${port}/api/update/bundle`, {
    method: 'POST', dispatcher: uploadAgent, body,
    headers: { 'content-type': 'application/octet-stream', cookie: admin.cookie ?? '', 'x-csrf-token': admin.csrf ?? '' },
  })
  return { status: response.status, body: await response.text() }
}

/** A bundle made from another's root image with one file replaced, signed with `keys` (debugfs: no mounts). */
async function rebundle(source: string, keys: ReleaseKeys, version: string, work: string, replace: Record<string, string>): Promise<string> {
  const content = join(work, `content-${version}`)
  await rm(content, { recursive: true, force: true })
  await run('unsquashfs', ['-q', '-n', '-d', content, source])
  const image = join(content, 'rootfs.ext4')
  for (const [path, text] of Object.entries(replace)) {
    const local = join(work, basename(path))
    await writeFile(local, text, { mode: 0o644 })
    await run('debugfs', ['-w', '-R', `rm ${path}`, image])
    await run('debugfs', ['-w', '-R', `write ${local} ${path}`, image])
  }
  await writeFile(join(content, 'manifest.raucm'), bundleManifest({ compatible: VM_COMPATIBLE, version, build: new Date().toISOString() }))
  const out = join(work, `${VM_IMAGE_BASENAME}-${version}.raucb`)
  await run('rauc', ['bundle', `--cert=${keys.signingCert}`, `--key=${keys.signingKey}`, `--keyring=${keys.caCert}`, content, out])
  await rm(content, { recursive: true, force: true })
  return out
}

/** Boots in one QEMU run's serial log: OVMF names each start of the boot loader (the kernel's banner is below loglevel=4). */
function bootsIn(log: string): number {
  return (log.match(/BdsDxe: starting Boot/g) ?? []).length
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      image: { type: 'string', default: join(REPO, 'dist', 'images', 'v1', `${VM_IMAGE_BASENAME}.qcow2`) },
      bundle: { type: 'string', default: join(REPO, 'dist', 'images', 'v2', `${VM_IMAGE_BASENAME}-2.0.0.raucb`) },
      'release-keys': { type: 'string', default: join(homedir(), '.config', 'pbx-gateway', 'release-keys') },
      'boot-timeout': { type: 'string', default: '600' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const image = resolve(values.image)
  const v2 = resolve(values.bundle)
  for (const [what, file] of [['the v1 image', image], ['the v2 bundle', v2]] as const) {
    if (!existsSync(file)) throw new StepFailure(`${what} is not at ${file}; make it first (see --help)`)
  }
  const bootTimeoutS = Number(values['boot-timeout'])
  if (!Number.isFinite(bootTimeoutS) || bootTimeoutS <= 0) throw new StepFailure(`--boot-timeout takes seconds (got "${values['boot-timeout']}")`)
  const missing = missingPackages([['qemu-system-x86_64', 'qemu-system-x86'], ['qemu-img', 'qemu-utils'], ['unsquashfs', 'squashfs-tools'], ['rauc', 'rauc'], ['debugfs', 'e2fsprogs'], ['openssl', 'openssl']])
  if (missing.length) throw new StepFailure(`missing tools; install them with: apt-get install -y ${missing.join(' ')}`)

  const progress = new Progress()
  const work = await mkdtemp(join(tmpdir(), 'pbxgw-update-test-'))
  progress.line(`host load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} CPUs; work directory ${work}`)
  const keys = await releaseKeys(resolve(values['release-keys']))
  if (keys.made) throw new StepFailure(`${keys.dir} had no release keys, so the v1 image was built with others: pass the --release-keys the image was built with`)
  const foreignKeys = await releaseKeys(join(work, 'foreign-keys'), 'another vendor')
  const v3 = await progress.step('v3 (its gateway exits at start) from the v2 bundle', () => rebundle(v2, keys, '3.0.0', work, {
    '/opt/pbx-gateway/dist/gateway.js': 'process.stderr.write("gateway 3.0.0: this build exits at start (update test)\\n")\nprocess.exit(1)\n',
    '/opt/pbx-gateway/package.json': JSON.stringify({ name: 'pbx-presence-gateway', version: '3.0.0', private: true, type: 'module' }, null, 2) + '\n',
  }), (f) => basename(f))
  const foreign = await progress.step('v2 signed by another CA', () => rebundle(v2, foreignKeys, '2.0.1', work, {}), (f) => basename(f))

  const overlay = join(work, 'overlay.qcow2')
  const vars = join(work, 'OVMF_VARS.fd')
  await copyFile(OVMF_VARS, vars)
  const machine = vmMachine(vars)
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', /\.raw$/.test(image) ? 'raw' : 'qcow2', '-b', image, overlay, '4G'])
  const port = await freePort()
  let vm: Vm | undefined
  let boot = 0
  let failed = false
  const checks = new CheckList(progress, () => vm?.serialLog)
  const check = <T>(name: string, work: () => Promise<T>): Promise<T> => checks.check(name, work)
  const serial = async () => (vm ? await readFile(vm.serialLog, 'utf8').catch(() => '') : '')
  /** The setup page after a (re)boot: signed in, on `version` in `slot`. */
  const backOn = async (version: string, slot: string): Promise<{ admin: Admin; view: UpdateView }> => {
    if (!vm) throw new CheckFailure('no VM')
    const answer = await waitForSetupPage(vm, port, bootTimeoutS)
    if (answer.body.version !== version) throw new CheckFailure(`the box runs ${String(answer.body.version)}, expected ${version}`)
    const admin = await signIn(port)
    const view = await updateView(port, admin)
    if (view.slot !== slot) throw new CheckFailure(`the box booted slot ${String(view.slot)}, expected ${slot}`)
    return { admin, view }
  }
  try {
    boot += 1
    vm = startVm(work, overlay, machine, port, boot, [])
    let admin = await check('1. v1 boots into slot A; the admin password is set with the setup code', async () => {
      const first = vm!
      await waitForSetupPage(first, port, bootTimeoutS)
      const code = (await waitForSerial(first.serialLog, SETUP_CODE, 60))[1]
      const setup = await api(port, 'POST', '/api/setup', { password: PASSWORD, setupCode: code })
      if (setup.status !== 200) throw new CheckFailure(`POST /api/setup answered ${setup.status}: ${JSON.stringify(setup.body)}`)
      const { admin: signedIn, view } = await backOn('1.0.0', 'A')
      progress.line(`  running ${view.runningVersion} in slot ${String(view.slot)}`)
      return signedIn
    })

    await check('2. a bundle signed by another CA is refused before anything is written', async () => {
      const sent = await upload(port, admin, foreign)
      if (sent.status !== 200) throw new CheckFailure(`the upload answered ${sent.status}: ${sent.body.slice(0, 200)}`)
      const view = await until('the box to refuse the foreign bundle', 300, async () => {
        const now = await updateView(port, admin)
        return now.latest?.state === 'failed' ? now : undefined
      })
      if (!/not signed by a key this box trusts/.test(view.latest?.reason ?? '')) throw new CheckFailure(`refused for another reason: ${String(view.latest?.reason)}`)
      progress.line(`  ${view.latest?.state}: ${view.latest?.reason?.slice(0, 160)}`)
    })

    await check('3. v2: uploaded, installed into slot B, rebooted into, marked good, healthy', async () => {
      const began = performance.now()
      const sent = await upload(port, admin, v2)
      if (sent.status !== 200) throw new CheckFailure(`the upload answered ${sent.status}: ${sent.body.slice(0, 200)}`)
      progress.line(`  uploaded ${((await stat(v2)).size / 1024 / 1024).toFixed(0)} MiB in ${((performance.now() - began) / 1000).toFixed(1)} s`)
      let seen = ''
      await until('the box to install v2 and reboot', 900, async () => {
        const log = await serial()
        if (bootsIn(log) > 1) return true
        const now = await updateView(port, admin).catch(() => undefined)
        const state = now?.latest ? `${now.latest.state}${now.latest.percent !== undefined ? ` ${now.latest.percent}%` : ''}` : ''
        if (state && state !== seen) { seen = state; progress.line(`  ${state} (${((performance.now() - began) / 1000).toFixed(1)} s)`) }
        if (now?.latest?.state === 'failed') throw new CheckFailure(`the update failed: ${String(now.latest.reason)}`)
        return undefined
      })
      progress.line(`  rebooting after ${((performance.now() - began) / 1000).toFixed(1)} s`)
      const back = await backOn('2.0.0', 'B')
      admin = back.admin
      const view = await until('v2 to report healthy', 300, async () => {
        const now = await updateView(port, admin)
        return now.latest?.state === 'healthy' ? now : undefined
      })
      progress.line(`  ${view.runningVersion} in slot ${String(view.slot)}: ${view.latest?.state}, ${((performance.now() - began) / 1000).toFixed(1)} s after the upload`)
    })

    await check('4. power cut while v3 installs: the box boots v2 in slot B again', async () => {
      const sent = await upload(port, admin, v3)
      if (sent.status !== 200) throw new CheckFailure(`the upload answered ${sent.status}: ${sent.body.slice(0, 200)}`)
      await until('v3 to be installing', 600, async () => ((await updateView(port, admin)).latest?.state === 'installing' ? true : undefined))
      await sleep(5000)
      const cutAt = (await updateView(port, admin)).latest
      await monitorCommand(vm!.monitor, 'quit')
      await vm!.exited
      progress.line(`  power cut during "${String(cutAt?.state)}"${cutAt?.percent !== undefined ? ` at ${cutAt.percent}%` : ''}`)
      boot += 1
      vm = startVm(work, overlay, machine, port, boot, [])
      const back = await backOn('2.0.0', 'B')
      admin = back.admin
    })

    await check('5. v3 (exits at start) is tried 3 times, the box falls back to v2 by itself and says why', async () => {
      const began = performance.now()
      // After the cut the agent checks the bundle again and installs v3 again (or, if the cut damaged the upload,
      // says so and v3 is uploaded again), then reboots into it; three tries, then slot B's v2.
      let uploadedAgain = false
      const view = await until('the box to come back on v2 with the update rolled back', 3600, async () => {
        const log = await serial()
        const answer = await api(port, 'GET', '/api/session').catch(() => undefined)
        if (answer?.status !== 200 || answer.body.version !== '2.0.0') return undefined
        if (bootsIn(log) < 4) {
          if (uploadedAgain) return undefined
          const now = await updateView(port, admin).catch(() => undefined)
          if (now?.latest?.state !== 'failed') return undefined
          progress.line(`  after the power cut: ${now.latest.state}: ${now.latest.reason}; uploading v3 again`)
          const sent = await upload(port, admin, v3)
          if (sent.status !== 200) throw new CheckFailure(`the upload answered ${sent.status}: ${sent.body.slice(0, 200)}`)
          uploadedAgain = true
          return undefined
        }
        admin = await signIn(port)
        const now = await updateView(port, admin)
        return now.latest?.state === 'rolled-back' ? now : undefined
      })
      const log = await serial()
      const tries = (log.match(/gateway 3\.0\.0: this build exits at start/g) ?? []).length
      progress.line(`  boots since the power cut: ${bootsIn(log)}; v3's gateway stopped ${tries} times; ${((performance.now() - began) / 1000).toFixed(1)} s`)
      progress.line(`  ${view.runningVersion} in slot ${String(view.slot)}: ${view.latest?.state}: ${view.latest?.reason}`)
      if (view.slot !== 'B') throw new CheckFailure(`rolled back to slot ${String(view.slot)}, expected B`)
      if (!/3\.0\.0/.test(view.latest?.reason ?? '')) throw new CheckFailure(`the reason does not name v3: ${String(view.latest?.reason)}`)
    })
  } catch (err) {
    failed = true
    if (!(err instanceof CheckFailure)) throw err
  } finally {
    // A clean power-down writes the guest's journal to the data partition, for the diagnosis below.
    await shutDown(vm, 90)
  }
  if (failed) {
    const journal = await guestJournal(work, overlay, machine.dataOffsetBytes).catch((err: unknown) => { progress.line(`  guest journal not read: ${(err as Error).message}`); return undefined })
    const lines = journal ? await run('journalctl', ['-D', journal, '--no-pager', '-o', 'short-monotonic', '--grep', 'update-agent|booted slot|rauc|boot-slot|trial-check|level":[45]0']).catch(() => '') : ''
    process.stdout.write(`\nGuest journal, update lines (all of it: journalctl -D ${journal ?? '?'}):\n${lines.split('\n').slice(-60).map((l) => l.slice(0, 300)).join('\n')}\n`)
  }
  progress.line(`host load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
  process.stdout.write(`\nUpdate test of ${image} with ${basename(v2)}\n${checks.results.map((r) => `  ${r}`).join('\n')}\n  total ${progress.elapsedS().toFixed(1)} s; serial logs in ${work}${values.keep || failed ? '' : ' (removed)'}\n`)
  if (!values.keep && !failed) await rm(work, { recursive: true, force: true })
  if (failed) process.exit(1)
}

main().catch((err: unknown) => {
  process.stderr.write(`update test failed: ${err instanceof StepFailure ? err.message : (err as Error).stack ?? String(err)}\n`)
  process.exit(err instanceof StepFailure ? 2 : 1)
})
