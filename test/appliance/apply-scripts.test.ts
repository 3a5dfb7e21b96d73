import { execFile } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { NetworkService } from '../../gateway/src/appliance/network-service.js'
import type { NetworkSettings } from '../../gateway/src/appliance/network-settings.js'
import { SshAccessStore } from '../../gateway/src/appliance/ssh-access.js'
import { systemClock } from '#kernel/clock.js'
import { sshPublicKey } from './fixtures/ssh-keys.js'
import type { TapTest } from '../helpers/tap-types.js'

/**
 * The root-side scripts the image runs from pbxgw-network-apply / pbxgw-ssh-apply, fed with files the real gateway
 * code wrote. /run is a temp folder; networkctl, systemctl and sshd (the OS edge: they need a booted systemd) are
 * stand-ins that record their calls.
 */
const LIBEXEC = resolve('firmware', 'image', 'rootfs', 'usr', 'libexec', 'pbxgw')

interface World { dataDir: string; runDir: string; cmdline: string; calls: () => Promise<string[]>; render(settings: NetworkSettings): Promise<void>; run(script: string, ...args: string[]): Promise<{ code: number; stderr: string; stdout: string }> }

async function world(t: TapTest): Promise<World> {
  const dir = await mkdtemp(join(tmpdir(), 'apply-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const dataDir = join(dir, 'data')
  const runDir = join(dir, 'run')
  const stubs = join(dir, 'bin')
  const log = join(dir, 'calls.log')
  await mkdir(dataDir, { recursive: true })
  await mkdir(stubs)
  for (const name of ['networkctl', 'systemctl', 'sshd']) {
    await writeFile(join(stubs, name), `#!/bin/sh\necho "${name} $*" >> '${log}'\n`)
    await chmod(join(stubs, name), 0o755)
  }
  const cmdline = join(dir, 'cmdline')
  await writeFile(cmdline, 'root=PARTUUID=x ro quiet\n')
  const network = new NetworkService({ dataDir, clock: systemClock, logger: pino({ level: 'silent' }) })
  return {
    dataDir, runDir, cmdline,
    // What the gateway writes on PUT /api/network (no trial timer left running).
    render: async (settings) => { await network.put(settings); network.stop() },
    calls: async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean),
    run: (script, ...args) => new Promise((done) => {
      execFile(join(LIBEXEC, script), args, {
        env: { PATH: `${stubs}:${process.env.PATH ?? ''}`, PBXGW_DATA_DIR: dataDir, PBXGW_RUN_DIR: runDir, PBXGW_CMDLINE: cmdline, PBXGW_FORCE_RELOAD: '1' },
      }, (err, stdout, stderr) => done({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
    }),
  }
}

t.test('network-apply installs what the setup page rendered and reloads networkd and timesyncd', async (t) => {
  const w = await world(t)
  await w.render({ mode: 'static', address: '192.168.1.20', prefix: 24, gateway: '192.168.1.1', dns: ['192.168.1.1'], ntp: ['ntp.example.com'], httpProxy: 'http://[2001:db8::3]:3128' })
  const result = await w.run('network-apply')
  t.equal(result.code, 0, result.stderr)
  t.match(await readFile(join(w.runDir, 'systemd', 'network', '10-pbxgw.network'), 'utf8'), 'Address=192.168.1.20/24')
  t.match(await readFile(join(w.runDir, 'systemd', 'timesyncd.conf.d', 'pbxgw.conf'), 'utf8'), 'NTP=ntp.example.com')
  t.match(await readFile(join(w.runDir, 'pbxgw', 'proxy.env'), 'utf8'), 'HTTPS_PROXY=http://[2001:db8::3]:3128')
  t.equal((await stat(join(w.runDir, 'systemd', 'network', '10-pbxgw.network'))).mode & 0o777, 0o644)
  t.same(await w.calls(), ['networkctl reload', 'systemctl try-restart systemd-timesyncd.service'])
  t.match(await readFile(join(w.dataDir, 'network', 'apply-result'), 'utf8'), /^applied \d+-1 /, 'the result the setup page shows')
})

t.test('network-apply refuses files the gateway would never write, and installs nothing', async (t) => {
  const w = await world(t)
  await w.render({ mode: 'dhcp', dns: [], ntp: [] })
  const pending = join(w.dataDir, 'network', 'pending')
  const good = await readFile(join(pending, '10-pbxgw.network'), 'utf8')
  const tampered: Array<[string, string, RegExp]> = [
    ['10-pbxgw.network', `${good}[Service]\nExecStart=/bin/sh -c reboot\n`, /a line the setup page never writes: \[Service\]/],
    ['10-pbxgw.network', good.replace('DHCP=yes', 'DHCP=yes\nDNS=1.1.1.1;reboot'), /never writes: DNS=1\.1\.1\.1;reboot/],
    ['10-pbxgw.network', good.replace('DHCP=yes', 'DNS=1.1.1.1\nDNS=1.1.1.2\nDNS=1.1.1.3\nDNS=1.1.1.4\nDNS=1.1.1.5'), /more than 4 DNS/],
    ['timesyncd.conf.d/pbxgw.conf', '[Time]\nNTP=a b c d e\n', /never writes: NTP=a b c d e/],
    ['proxy.env', 'LD_PRELOAD=/tmp/x.so\n', /never writes: LD_PRELOAD/],
    ['proxy.env', 'https_proxy=http://proxy:3128/$(reboot)\n', /never writes/],
  ]
  for (const [file, text, expected] of tampered) {
    await writeFile(join(pending, file), text)
    const result = await w.run('network-apply')
    t.equal(result.code, 1, `${file} tampered: refused`)
    t.match(await readFile(join(w.dataDir, 'network', 'apply-result'), 'utf8'), expected, 'the reason in apply-result')
    await t.rejects(stat(join(w.runDir, 'systemd', 'network', '10-pbxgw.network')), { code: 'ENOENT' }, 'nothing installed')
    await writeFile(join(pending, '10-pbxgw.network'), good)
    await w.render({ mode: 'dhcp', dns: [], ntp: [] })
  }
  t.same(await w.calls(), [], 'networkd was never reloaded with refused files')
})

t.test('pbxgw.network=dhcp on the kernel command line: back to DHCP once per boot; pbxgw-reset-network does the same', async (t) => {
  const w = await world(t)
  await w.render({ mode: 'static', address: '192.168.1.20', prefix: 24, dns: [], ntp: [] })
  t.equal((await w.run('network-apply')).code, 0)
  await writeFile(w.cmdline, 'root=PARTUUID=x ro pbxgw.network=dhcp quiet\n')
  const reset = await w.run('network-apply')
  t.equal(reset.code, 0, reset.stderr)
  t.match(reset.stderr, /pbxgw\.network=dhcp on the kernel command line/)
  await t.rejects(stat(join(w.runDir, 'systemd', 'network', '10-pbxgw.network')), { code: 'ENOENT' }, 'the static file is gone: the image\'s DHCP default applies')
  await t.rejects(stat(join(w.dataDir, 'network', 'settings.json')), { code: 'ENOENT' }, 'the stored setting is forgotten')
  t.match(await w.calls(), ['networkctl reload', 'systemctl try-restart systemd-timesyncd.service', 'networkctl reload', 'systemctl try-restart systemd-timesyncd.service', 'systemctl try-restart pbx-gateway.service'])
  t.equal((await new NetworkService({ dataDir: w.dataDir, clock: systemClock, logger: pino({ level: 'silent' }) }).get()).settings.mode, 'dhcp', 'the gateway reads DHCP at its restart')

  // Later in the same boot, a new setting from the setup page is applied again.
  await w.render({ mode: 'static', address: '192.168.1.21', prefix: 24, dns: [], ntp: [] })
  t.equal((await w.run('network-apply')).code, 0)
  t.match(await readFile(join(w.runDir, 'systemd', 'network', '10-pbxgw.network'), 'utf8'), 'Address=192.168.1.21/24', 'the flag acts once per boot')

  const command = await w.run('network-apply', '--reset-dhcp')
  t.equal(command.code, 0)
  await t.rejects(stat(join(w.runDir, 'systemd', 'network', '10-pbxgw.network')), { code: 'ENOENT' }, '--reset-dhcp (pbxgw-reset-network) too')
  const help = await w.run('network-apply', '--help')
  t.match(help.stdout, /Usage: network-apply/)
  t.equal((await w.run('network-apply', '--bogus')).code, 2, 'an unknown option exits 2')
})

t.test('ssh-apply: keys installed root-side with host keys made once; options or short RSA keys turn SSH off', async (t) => {
  const w = await world(t)
  const store = new SshAccessStore(w.dataDir, pino({ level: 'silent' }))
  const ed25519 = await sshPublicKey('ed25519')
  await store.put(true, [ed25519])
  const on = await w.run('ssh-apply')
  t.equal(on.code, 0, on.stderr)
  const target = join(w.runDir, 'pbxgw-ssh')
  t.equal(await readFile(join(target, 'authorized_keys'), 'utf8'), `${ed25519}\n`, 'the keys sshd reads')
  t.equal((await stat(join(target, 'ssh_host_ed25519_key'))).mode & 0o777, 0o600, 'a host key, 0600')
  const hostKey = await readFile(join(w.dataDir, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8')
  t.same(await w.calls(), ['sshd -t', 'systemctl restart ssh.service'])
  t.equal((await w.run('ssh-apply')).code, 0)
  t.equal(await readFile(join(w.dataDir, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8'), hostKey, 'the host key is kept between runs (no warning for the admin)')

  await writeFile(join(w.dataDir, 'ssh', 'authorized_keys'), `command="reboot" ${ed25519}\n`)
  const options = await w.run('ssh-apply')
  t.equal(options.code, 1, 'a key with options (written behind the gateway\'s back) is refused')
  t.match(await readFile(join(w.dataDir, 'ssh', 'apply-result'), 'utf8'), /refused: authorized_keys has a line that is not a plain public key/)
  await t.rejects(stat(join(target, 'authorized_keys')), { code: 'ENOENT' }, 'and SSH is turned off, keys removed')

  await writeFile(join(w.dataDir, 'ssh', 'authorized_keys'), `${await sshPublicKey('rsa', 2048)}\n`)
  t.equal((await w.run('ssh-apply')).code, 1)
  t.match(await readFile(join(w.dataDir, 'ssh', 'apply-result'), 'utf8'), /RSA with 2048 bits; at least 3072/, 'a short RSA key is refused by ssh-keygen\'s count')

  await store.put(false, [])
  t.equal((await w.run('ssh-apply')).code, 0)
  t.match(await readFile(join(w.dataDir, 'ssh', 'apply-result'), 'utf8'), /^disabled/)
  t.equal((await w.calls()).at(-1), 'systemctl stop ssh.service', 'turned off: ssh.service stopped')
})

t.test('a link planted in the gateway\'s folders is never followed into root\'s files', async (t) => {
  const w = await world(t)
  await w.render({ mode: 'dhcp', dns: [], ntp: [] })
  const secret = join(w.dataDir, '..', 'root-only-secret')
  await writeFile(secret, 'root:$y$secret-hash:19000:0:99999:7:::\n', { mode: 0o600 })
  const { symlink, unlink } = await import('node:fs/promises')
  const proxyFile = join(w.dataDir, 'network', 'pending', 'proxy.env')
  await unlink(proxyFile)
  await symlink(secret, proxyFile)
  const result = await w.run('network-apply')
  t.equal(result.code, 1, 'refused')
  const reason = await readFile(join(w.dataDir, 'network', 'apply-result'), 'utf8')
  t.match(reason, /proxy\.env is missing or not a plain file/)
  t.notMatch(reason, /secret-hash/, 'the linked file\'s content is not shown to the gateway')

  const store = new SshAccessStore(w.dataDir, pino({ level: 'silent' }))
  await store.put(true, [await sshPublicKey('ed25519')])
  const keys = join(w.dataDir, 'ssh', 'authorized_keys')
  await unlink(keys)
  await symlink(secret, keys)
  t.equal((await w.run('ssh-apply')).code, 1)
  t.match(await readFile(join(w.dataDir, 'ssh', 'apply-result'), 'utf8'), /authorized_keys is missing or a symbolic link/)
  t.equal((await stat(secret)).mode & 0o777, 0o600, 'the linked file\'s mode is untouched')
})
