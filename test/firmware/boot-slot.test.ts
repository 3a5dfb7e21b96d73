/**
 * The VM image's A/B switch on the host: RAUC's boot loader backend (boot-slot) and the trial check, run as the box
 * runs them (sh), on an ESP directory and slot roots in a temporary folder. The image's own entries and templates
 * come from layout.ts, as the build writes them. Booting them is the update test's (npm run image:update-test).
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { entryTemplates, loaderEntry, LOADER_CONF, recoveryEntry } from '../../firmware/image/layout.js'

const SCRIPT = 'firmware/image/rootfs/usr/libexec/pbxgw/boot-slot'
const TRIAL = 'firmware/image/rootfs/usr/libexec/pbxgw/trial-check'
const UUID = { A: '11111111-1111-4111-8111-111111111111', B: '22222222-2222-4222-8222-222222222222' }

interface Box { dir: string; esp: string; entries: string; env: NodeJS.ProcessEnv }

async function box(): Promise<Box> {
  const dir = await mkdtemp(join(tmpdir(), 'boot-slot-'))
  const esp = join(dir, 'esp')
  const entries = join(esp, 'loader', 'entries')
  await mkdir(entries, { recursive: true })
  await writeFile(join(esp, 'loader', 'loader.conf'), LOADER_CONF)
  await writeFile(join(entries, 'pbxgw-a.conf'), loaderEntry('a', UUID.A, '1'))
  await writeFile(join(entries, 'recovery-dhcp-a.conf'), recoveryEntry('a', UUID.A, '1'))
  const templates = join(dir, 'templates')
  await mkdir(templates)
  for (const [name, text] of Object.entries(entryTemplates())) await writeFile(join(templates, name), text)
  for (const slot of ['A', 'B'] as const) {
    await mkdir(join(dir, `root-${slot}`, 'boot'), { recursive: true })
    await writeFile(join(dir, `root-${slot}`, 'boot', 'vmlinuz-6.12.0-test'), `kernel of ${slot}`)
    await writeFile(join(dir, `root-${slot}`, 'boot', 'initrd.img-6.12.0-test'), `initrd of ${slot}`)
  }
  await writeFile(join(dir, 'cmdline'), `root=PARTUUID=${UUID.A} ro rauc.slot=A quiet\n`)
  const env = {
    PATH: process.env['PATH'], PBXGW_ESP: esp, PBXGW_CMDLINE: join(dir, 'cmdline'), PBXGW_TEMPLATES: templates,
    PBXGW_SLOT_ROOT_A: join(dir, 'root-A'), PBXGW_SLOT_ROOT_B: join(dir, 'root-B'), PBXGW_PARTUUID_A: UUID.A, PBXGW_PARTUUID_B: UUID.B,
  }
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return { dir, esp, entries, env }
}

function sh(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', [script, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: stdout.trim(), stderr: stderr.trim() })
    })
  })
}

const slot = (b: Box, ...args: string[]) => sh(SCRIPT, args, b.env)
const files = async (b: Box) => (await readdir(b.entries)).sort()

/** What systemd-boot does at a boot of a counted entry: one try less, one more done (pbxgw-b+3 -> pbxgw-b+2-1). */
async function bootCounted(b: Box, x: 'a' | 'b'): Promise<void> {
  const name = (await files(b)).find((f) => f.startsWith(`pbxgw-${x}+`))
  const m = name ? /^pbxgw-[ab]\+(\d+)(?:-(\d+))?\.conf$/.exec(name) : null
  if (!name || !m) throw new Error(`no counted entry for ${x}`)
  const left = Number(m[1])
  const done = Number(m[2] ?? 0)
  await rename(join(b.entries, name), join(b.entries, `pbxgw-${x}+${Math.max(0, left - 1)}-${done + 1}.conf`))
}

t.test('an update to B: marked bad, written, tried three times, then good; the recovery entry follows', async (t) => {
  const b = await box()
  t.same(await slot(b, 'get-primary'), { code: 0, stdout: 'A', stderr: '' }, 'a new image boots A')
  t.equal((await slot(b, 'get-state', 'A')).stdout, 'good')
  t.equal((await slot(b, 'get-state', 'B')).stdout, 'bad', 'B has no entry yet')
  t.equal((await slot(b, 'get-current')).stdout, 'A', 'rauc.slot= names the booted slot')

  t.equal((await slot(b, 'set-state', 'B', 'bad')).code, 0, 'RAUC marks the target bad before it writes: nothing to remove is fine')
  const set = await slot(b, 'set-primary', 'B')
  t.equal(set.code, 0, set.stderr)
  t.match(set.stderr, /slot B is the next boot \(kernel 6\.12\.0-test, generation 2, 3 tries\)/)
  t.same(await files(b), ['pbxgw-a.conf', 'pbxgw-b+3.conf', 'recovery-dhcp-a.conf'])
  t.equal(await readFile(join(b.esp, 'b', 'vmlinuz'), 'utf8'), 'kernel of B', 'B\'s own kernel on the ESP')
  t.equal(await readFile(join(b.esp, 'b', 'initrd.img'), 'utf8'), 'initrd of B')
  t.equal(await readFile(join(b.entries, 'pbxgw-b+3.conf'), 'utf8'), loaderEntry('b', UUID.B, '2'), 'the entry is the one layout.ts makes, generation 2')
  t.equal((await slot(b, 'get-primary')).stdout, 'B', 'the next boot tries B')

  await bootCounted(b, 'b')
  await bootCounted(b, 'b')
  t.equal((await slot(b, 'get-primary')).stdout, 'B', 'one try left: still B')
  t.equal((await slot(b, 'get-state', 'B')).stdout, 'good', 'a slot with tries left is not bad')
  const good = await slot(b, 'set-state', 'B', 'good')
  t.equal(good.code, 0, good.stderr)
  t.same(await files(b), ['pbxgw-a.conf', 'pbxgw-b.conf', 'recovery-dhcp-b.conf'], 'counter gone; the way back to DHCP boots B now')
  t.match(await readFile(join(b.entries, 'recovery-dhcp-b.conf'), 'utf8'), /pbxgw\.network=dhcp/)
  t.equal((await slot(b, 'set-state', 'B', 'good')).code, 0, 'marking good twice (the agent and a retry) is fine')
  t.equal((await slot(b, 'get-primary')).stdout, 'B')

  // The next update goes to A with a generation above B's.
  await writeFile(join(b.dir, 'cmdline'), `root=PARTUUID=${UUID.B} ro rauc.slot=B\n`)
  t.equal((await slot(b, 'set-state', 'A', 'bad')).code, 0)
  t.same(await files(b), ['pbxgw-b.conf', 'recovery-dhcp-b.conf'], 'A\'s entry is gone while A is written')
  t.equal((await slot(b, 'set-primary', 'A')).code, 0)
  t.match(await readFile(join(b.entries, 'pbxgw-a+3.conf'), 'utf8'), /^version 3$/m)
  t.equal((await slot(b, 'get-primary')).stdout, 'A')
})

t.test('a slot that uses up its tries falls back to the other one', async (t) => {
  const b = await box()
  await slot(b, 'set-state', 'B', 'bad')
  await slot(b, 'set-primary', 'B')
  for (let i = 0; i < 3; i++) await bootCounted(b, 'b')
  t.same(await files(b), ['pbxgw-a.conf', 'pbxgw-b+0-3.conf', 'recovery-dhcp-a.conf'])
  t.equal((await slot(b, 'get-primary')).stdout, 'A', 'no tries left: systemd-boot boots A, and so says get-primary')
  t.equal((await slot(b, 'get-state', 'B')).stdout, 'bad')
  // A later update to B replaces the spent entry.
  await slot(b, 'set-state', 'B', 'bad')
  t.same(await files(b), ['pbxgw-a.conf', 'recovery-dhcp-a.conf'])
})

t.test('bad input: unknown slots, states and commands, a slot without a kernel, no rauc.slot', async (t) => {
  const b = await box()
  const c = await slot(b, 'set-primary', 'C')
  t.equal(c.code, 1)
  t.match(c.stderr, /a slot is A or B \(got "C"\)/)
  t.same(await files(b), ['pbxgw-a.conf', 'recovery-dhcp-a.conf'], 'nothing changed')
  const state = await slot(b, 'set-state', 'B', 'maybe')
  t.equal(state.code, 1)
  t.match(state.stderr, /a state is good or bad/)
  const unknown = await slot(b, 'reboot-now')
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, /^Usage: boot-slot/)
  await rm(join(b.dir, 'root-B', 'boot', 'vmlinuz-6.12.0-test'))
  const noKernel = await slot(b, 'set-primary', 'B')
  t.equal(noKernel.code, 1)
  t.match(noKernel.stderr, /slot B has no kernel in \/boot/)
  t.equal((await slot(b, 'get-primary')).stdout, 'A', 'a failed write never becomes the next boot')
  await writeFile(join(b.dir, 'cmdline'), 'root=/dev/vda2 ro\n')
  const current = await slot(b, 'get-current')
  t.equal(current.code, 1)
  t.match(current.stderr, /rauc\.slot= is not on the kernel command line/)
  await rm(join(b.entries, 'pbxgw-a.conf'))
  const none = await slot(b, 'get-primary')
  t.equal(none.code, 1)
  t.match(none.stderr, /no boot entry of the box/)
})

t.test('the trial check: passes once the slot is marked good, gives up on a gateway that keeps stopping', async (t) => {
  const b = await box()
  await slot(b, 'set-state', 'B', 'bad')
  await slot(b, 'set-primary', 'B')
  await bootCounted(b, 'b')
  await writeFile(join(b.dir, 'cmdline'), `root=PARTUUID=${UUID.B} ro rauc.slot=B\n`)
  const data = join(b.dir, 'data')
  await mkdir(join(data, 'update'), { recursive: true })
  // systemctl show -P <property> pbx-gateway.service, as the box answers it.
  const fake = join(b.dir, 'systemctl')
  const answers = join(b.dir, 'answers')
  await writeFile(fake, `#!/bin/sh\n. "${answers}"\ncase "$3" in NRestarts) echo "$RESTARTS" ;; ActiveState) echo "$STATE" ;; ExecMainStatus) echo 1 ;; esac\n`)
  await chmod(fake, 0o755)
  const env = { ...b.env, PBXGW_DATA_DIR: data, PBXGW_SYSTEMCTL: fake, PBXGW_TRIAL_INTERVAL_S: '1', PBXGW_TRIAL_TIMEOUT_S: '30' }

  await writeFile(answers, 'RESTARTS=3\nSTATE=activating\n')
  // The gateway (unprivileged) owns this folder: a symlink it left where root writes must not be followed.
  const victim = join(b.dir, 'victim')
  await writeFile(victim, 'root-owned content\n')
  await symlink(victim, join(data, 'update', 'trial-failure'))
  await symlink(victim, join(data, 'update', 'trial-failure.new'))
  const broken = await sh(TRIAL, [], env)
  t.equal(broken.code, 1, 'gives up: the unit reboots the box')
  t.match(broken.stderr, /the gateway stopped at start 3 times \(last exit status 1\)/)
  t.match(await readFile(join(data, 'update', 'trial-failure'), 'utf8'), /^version .* in slot B: the gateway stopped at start 3 times/, 'the reason waits for the previous version\'s agent')
  t.equal(await readFile(victim, 'utf8'), 'root-owned content\n', 'the symlink\'s target is untouched')
  t.notOk((await lstat(join(data, 'update', 'trial-failure'))).isSymbolicLink(), 'the symlink was replaced by the reason file')
  t.same((await readdir(join(data, 'update'))).filter((n) => n.startsWith('.')), [], 'no temporary file left')
  await rm(join(data, 'update', 'trial-failure.new'))
  // A folder swapped for a symlink gets nothing at all.
  const elsewhere = join(b.dir, 'elsewhere')
  await mkdir(elsewhere)
  const swapped = join(b.dir, 'swapped')
  await mkdir(swapped)
  await symlink(elsewhere, join(swapped, 'update'))
  const refused = await sh(TRIAL, [], { ...env, PBXGW_DATA_DIR: swapped })
  t.equal(refused.code, 1, 'still gives up (the unit reboots)')
  t.same(await readdir(elsewhere), [], 'but writes nothing through the symlinked folder')

  await writeFile(answers, 'RESTARTS=0\nSTATE=active\n')
  const healthy = sh(TRIAL, [], env)
  await new Promise((r) => setTimeout(r, 1500))
  t.equal((await slot(b, 'set-state', 'B', 'good')).code, 0, 'the agent marks the slot good')
  const passed = await healthy
  t.equal(passed.code, 0, passed.stderr)
  t.match(passed.stderr, /slot b is marked good/)

  await writeFile(join(b.dir, 'cmdline'), 'root=/dev/vda2 ro\n')
  const notOurs = await sh(TRIAL, [], env)
  t.equal(notOurs.code, 0, 'a boot without rauc.slot= has nothing to check')
  t.ok(existsSync(join(data, 'update', 'trial-failure')))
})
