import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { parseBootedSlot, RaucSlotInstaller, slotFromCmdline, type CommandRunner } from '../../gateway/src/update/slot-installer.js'

const fixture = (name: string) => readFile(new URL(`./fixtures/${name}`, import.meta.url), 'utf8')

/** Records each call and answers like rauc would (the OS edge). */
function recordingRunner(answers: Record<string, { code: number; stdout?: string; stderr?: string; lines?: string[] }>) {
  const calls: Array<{ command: string; args: readonly string[] }> = []
  const run: CommandRunner = async (command, args, onLine) => {
    calls.push({ command, args })
    const answer = answers[`${command} ${args[0]}`] ?? { code: 0 }
    for (const line of answer.lines ?? []) onLine?.(line)
    return { code: answer.code, stdout: answer.stdout ?? (answer.lines ?? []).join('\n'), stderr: answer.stderr ?? '' }
  }
  return { run, calls }
}

t.test('the booted slot is read from rauc status JSON', async (t) => {
  t.equal(parseBootedSlot(await fixture('rauc-status-booted-a.json')), 'A', 'the booted field')
  t.equal(parseBootedSlot(await fixture('rauc-status-no-booted-field.json')), 'B', 'the slot whose state is booted')
  t.throws(() => parseBootedSlot('not json'), /did not answer JSON: is this rauc 1.5 or newer/)
  t.throws(() => parseBootedSlot('{"slots":[{"rootfs.0":{"state":"inactive","bootname":"A"}}]}'), /names no booted slot: the box was not started from a RAUC slot/)
})

t.test('RaucSlotInstaller passes arguments without a shell and reads progress and failures', async (t) => {
  const status = await fixture('rauc-status-booted-a.json')
  const { run, calls } = recordingRunner({
    'rauc status': { code: 0, stdout: status },
    'rauc install': { code: 0, lines: ['installing `/data/update/2.0.0.raucb`:   0% Installing', '  20% Checking bundle', ' 40% Checking bundle done.', 'not a progress line', '100% Installing done.'] },
  })
  const rauc = new RaucSlotInstaller({ keyring: '/etc/rauc/keyring.pem' }, { run })
  const progress: Array<[number, string]> = []
  await rauc.install('/data/update/2.0.0 $(reboot).raucb', (p, what) => progress.push([p, what]))
  t.same(progress, [[0, 'Installing'], [20, 'Checking bundle'], [40, 'Checking bundle done.'], [100, 'Installing done.']])
  t.equal(await rauc.bootedSlot(), 'A')
  await rauc.verify('-rf.raucb')
  await rauc.markGood()
  await rauc.reboot()
  t.same(calls, [
    { command: 'rauc', args: ['install', '--', '/data/update/2.0.0 $(reboot).raucb'] },
    { command: 'rauc', args: ['status', '--output-format=json'] },
    { command: 'rauc', args: ['info', '--keyring=/etc/rauc/keyring.pem', '--output-format=json', '--', '-rf.raucb'] },
    { command: 'rauc', args: ['status', 'mark-good'] },
    { command: 'systemctl', args: ['reboot'] },
  ], 'a path is one argument after --, never shell text or an option')

  const failing = new RaucSlotInstaller({ keyring: '/k.pem' }, { run: recordingRunner({ 'rauc install': { code: 1, stderr: 'rauc-Message: installing failed\nFailed to check bundle: signature verification failed: certificate verify error' } }).run })
  await t.rejects(failing.install('/b', () => undefined), { code: 'UPDATE_INSTALL', message: /rauc install failed: Failed to check bundle: signature verification failed/ })
  const noStatus = new RaucSlotInstaller({ keyring: '/k.pem' }, { run: recordingRunner({ 'rauc status': { code: 1, stderr: 'Failed to obtain status' } }).run })
  await t.rejects(noStatus.bootedSlot(), { code: 'UPDATE_STATUS' })
})

t.test('on the appliance the reboot is asked for through a file a root unit watches; no privileges needed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'reboot-request-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { run, calls } = recordingRunner({})
  const request = join(dir, 'reboot-request')
  await new RaucSlotInstaller({ keyring: '/k.pem', rebootRequestFile: request }, { run }).reboot()
  t.match(await readFile(request, 'utf8'), /^\d{4}-\d{2}-\d{2}T/, 'the request file is written')
  t.same(calls, [], 'no systemctl: the gateway may not reboot the box itself')
  const unit = await readFile('firmware/systemd/pbxgw-update-reboot.path', 'utf8')
  t.match(unit, /^PathExists=\/var\/lib\/pbx-gateway\/update\/reboot-request$/m, 'the unit watches the file the image config names')
  const config = JSON.parse(await readFile('firmware/image/rootfs/etc/pbx-gateway/gateway.json', 'utf8')) as { updates: { rebootRequestFile: string } }
  t.equal(config.updates.rebootRequestFile, '/var/lib/pbx-gateway/update/reboot-request')
  const service = await readFile('firmware/systemd/pbxgw-update-reboot.service', 'utf8')
  t.ok(service.indexOf('rm -f /var/lib/pbx-gateway/update/reboot-request') < service.indexOf('reboot\n'), 'the request is removed before the reboot: no reboot loop after a power cut')
  await t.rejects(new RaucSlotInstaller({ keyring: '/k.pem', rebootRequestFile: join(dir, 'missing', 'reboot-request') }, { run }).reboot(), { code: 'UPDATE_REBOOT', message: /could not ask for the reboot/ })
})

t.test('the real rauc refuses a file that is not a bundle signed by the keyring', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rauc-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=test release key'])
  const notBundle = join(dir, 'fake.raucb')
  await writeFile(notBundle, Buffer.alloc(8192, 1))
  const rauc = new RaucSlotInstaller({ keyring: cert })
  await t.rejects(rauc.verify(notBundle), { code: 'UPDATE_SIGNATURE', message: /not signed by a key this box trusts \(rauc info: .+\)/ })
})

t.test('a real RAUC bundle: accepted with the release key in the keyring, refused when signed with another key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'rauc-bundle-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const run = promisify(execFile)
  const keyPair = async (name: string) => {
    await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.pem`), '-days', '1', '-subj', `/CN=${name}`])
    return { key: join(dir, `${name}.key`), cert: join(dir, `${name}.pem`) }
  }
  const release = await keyPair('release-key')
  const stranger = await keyPair('someone-else')
  // A tiny root file system image and a manifest: what `npm run image -- --bundle` makes, in small.
  const content = join(dir, 'content')
  await mkdir(content)
  await writeFile(join(content, 'rootfs.img'), randomBytes(64 * 1024))
  await writeFile(join(content, 'manifest.raucm'), '[update]\ncompatible=pbx-presence-gateway-test\nversion=2.0.0\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n')
  const bundle = async (signer: { key: string; cert: string }, out: string) => {
    await run('rauc', ['bundle', `--cert=${signer.cert}`, `--key=${signer.key}`, content, join(dir, out)])
    return join(dir, out)
  }
  const good = await bundle(release, 'good.raucb')
  const other = await bundle(stranger, 'other.raucb')
  const box = new RaucSlotInstaller({ keyring: release.cert })
  t.same(await box.verify(good), { version: '2.0.0' }, 'signed with the release key: accepted, its version read from the manifest')
  await t.rejects(box.verify(other), { code: 'UPDATE_SIGNATURE', message: /not signed by a key this box trusts \(rauc info: .*signature verification failed/ }, 'signed with another key: refused')
})

t.test('the booted slot comes from rauc.slot= on the kernel command line when the boot loader put it there', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cmdline-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const cmdline = join(dir, 'cmdline')
  await writeFile(cmdline, 'initrd=\\b\\initrd.img root=PARTUUID=x ro rauc.slot=B\n')
  const { run, calls } = recordingRunner({ 'rauc status': { code: 1, stderr: 'Failed to obtain status: timeout' } })
  t.equal(await new RaucSlotInstaller({ keyring: '/k.pem', cmdline }, { run }).bootedSlot(), 'B', 'no D-Bus round trip at start')
  t.same(calls, [])
  t.equal(slotFromCmdline('ro rauc.slot=A quiet rauc.slot=B'), 'B', 'the last one counts, as for the kernel')
  t.equal(slotFromCmdline('rauc.slot=$(reboot)'), undefined, 'only a slot name')
  await writeFile(cmdline, 'root=/dev/vda2 ro\n')
  await t.rejects(new RaucSlotInstaller({ keyring: '/k.pem', cmdline }, { run }).bootedSlot(), { code: 'UPDATE_STATUS' }, 'without it, rauc status answers (here: it fails)')
})
