/**
 * The appliance image's recipe, checked without building it (the build takes minutes and root; `npm run image`
 * and `npm run image:test` do the real thing): units, config, partition table, boot entries, console and mDNS files.
 */
import { execFile } from 'node:child_process'
import { access, constants, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { unitNodeLaunch } from '../../firmware/image/compile-cache.js'
import { runTsCli } from '../helpers/ts-cli.js'
import { adapterRegistry } from '../../gateway/src/adapters/registry.js'
import { parseGatewayConfig } from '../../gateway/src/config/load.js'
import { bundleManifest, VM_COMPATIBLE } from '../../firmware/image/bundle.js'
import { diskSizeMiB, entryTemplates, KERNEL_CONSOLES, LOADER_CONF, loaderEntry, PARTITION_TYPES, recoveryEntry, recoveryEntryFile, partitionOffsets, sfdiskScript, VM_PARTITIONS } from '../../firmware/image/layout.js'
import { BASE_PACKAGES, DISABLE_UNITS, ENABLE_UNITS, MASK_UNITS, runtimePackages } from '../../firmware/image/recipe.js'

const exec = promisify(execFile)
const ROOTFS = 'firmware/image/rootfs'

/** systemd unit file → section → key → values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>()
  let current: Map<string, string[]> | undefined
  for (const [index, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const header = /^\[([A-Za-z0-9]+)\]$/.exec(line)
    if (header) {
      current = new Map()
      sections.set(header[1] ?? '', current)
      continue
    }
    const pair = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line)
    if (!pair || !current) throw new Error(`line ${index + 1} is neither a section nor Key=value: ${line}`)
    const values = current.get(pair[1] ?? '') ?? []
    values.push(pair[2] ?? '')
    current.set(pair[1] ?? '', values)
  }
  return sections
}

const cli = runTsCli

t.test('the gateway unit is hardened and runs the shipped Node on the box config', async (t) => {
  const unit = parseUnit(await readFile('firmware/systemd/pbx-gateway.service', 'utf8'))
  const service = unit.get('Service')
  t.ok(service, 'has a [Service] section')
  const one = (key: string) => service?.get(key)?.at(-1)
  t.equal(one('User'), 'pbxgw', 'not root')
  // The memory settings measured by npm run bench:memory (the 100 MB target with 500 extensions) ship with the unit.
  t.equal(one('ExecStart'), '/opt/pbx-gateway/node/bin/node --max-semi-space-size=1 --optimize-for-size --no-turbofan --no-maglev dist/gateway.js --config /etc/pbx-gateway/gateway.json')
  t.ok(service?.get('Environment')?.includes('MALLOC_ARENA_MAX=2'), 'glibc keeps two malloc arenas')
  t.equal(one('WorkingDirectory'), '/opt/pbx-gateway')
  for (const [key, value] of Object.entries({
    NoNewPrivileges: 'true', ProtectSystem: 'strict', ProtectHome: 'true', PrivateTmp: 'true', PrivateDevices: 'true',
    CapabilityBoundingSet: 'CAP_NET_BIND_SERVICE', AmbientCapabilities: 'CAP_NET_BIND_SERVICE', RestrictSUIDSGID: 'true',
    SystemCallFilter: '@system-service', StateDirectory: 'pbx-gateway', ReadWritePaths: '/var/lib/pbx-gateway',
    StandardError: 'journal+console', RuntimeDirectory: 'pbx-gateway',
  })) t.equal(one(key), value, `${key}=${value}`)
  t.notOk(service?.has('MemoryDenyWriteExecute'), 'no MemoryDenyWriteExecute: V8 compiles code at run time')
  t.match(unit.get('Unit')?.get('RequiresMountsFor')?.join(' ') ?? '', /\/var\/lib\/pbx-gateway/, 'waits for the data partition')

  const hostname = parseUnit(await readFile('firmware/systemd/pbxgw-hostname.service', 'utf8'))
  t.match(hostname.get('Unit')?.get('Before')?.join(' ') ?? '', /avahi-daemon\.service/, 'the name is set before avahi announces it')
  t.match(hostname.get('Unit')?.get('Before')?.join(' ') ?? '', /pbx-gateway\.service/, 'and before the gateway puts it in its certificate')
  t.throws(() => parseUnit('[Service]\nthis is not a unit line\n'), /neither a section/, 'the parser above rejects a broken file')
})

t.test('the box config is one the gateway accepts: no connectors, data on the data partition, setup page on 443', async (t) => {
  const text = await readFile(join(ROOTFS, 'etc/pbx-gateway/gateway.json'), 'utf8')
  const config = parseGatewayConfig(JSON.parse(text), adapterRegistry, 'gateway.json', {})
  t.equal(config.dataDir, '/var/lib/pbx-gateway')
  t.equal(config.web.port, 443)
  t.equal(config.web.enabled, true)
  t.same(config.connectors, [])
  t.equal(config.gatewayId, 'unenrolled', 'the id comes from enrollment')
  t.throws(() => parseGatewayConfig({ ...JSON.parse(text), relay: {} }, adapterRegistry, 'gateway.json', {}), /relay/, 'a config without relay.url is refused, so the placeholder matters')
})

t.test('the partition table has esp, root-a, root-b and data, and sfdisk writes it', async (t) => {
  t.same(VM_PARTITIONS.map((p) => p.name), ['esp', 'root-a', 'root-b', 'data'])
  t.equal(VM_PARTITIONS.find((p) => p.name === 'esp')?.type, PARTITION_TYPES.esp)
  t.same(VM_PARTITIONS.filter((p) => p.type === PARTITION_TYPES.rootX86_64).map((p) => p.sizeMiB), [1024, 1024], 'two equal root slots')
  t.equal(VM_PARTITIONS.at(-1)?.name, 'data', 'data is last, so it can grow into the rest of the disk')
  t.equal(VM_PARTITIONS.filter((p) => p.type === PARTITION_TYPES.linuxGeneric).length, 1, 'only data has the type repart.d/50-data.conf grows')
  const placed = partitionOffsets()
  for (const [i, p] of placed.entries()) {
    t.equal(p.offsetBytes % (1024 * 1024), 0, `${p.name} starts on a MiB boundary`)
    if (i > 0) t.equal(p.offsetBytes, (placed[i - 1]?.offsetBytes ?? 0) + (placed[i - 1]?.sizeBytes ?? 0), `${p.name} follows the one before`)
  }

  const dir = await mkdtemp(join(tmpdir(), 'image-recipe-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const disk = join(dir, 'disk.raw')
  await exec('truncate', ['-s', `${diskSizeMiB()}M`, disk])
  const uuids = { esp: '11111111-1111-4111-8111-111111111111', 'root-a': '22222222-2222-4222-8222-222222222222', 'root-b': '33333333-3333-4333-8333-333333333333', data: '44444444-4444-4444-8444-444444444444' }
  const sfdisk = execFile('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', disk])
  const written = new Promise<number | null>((resolve) => sfdisk.on('exit', resolve))
  sfdisk.stdin?.end(sfdiskScript(uuids))
  t.equal(await written, 0, 'sfdisk accepts the script')
  const dump = JSON.parse((await exec('sfdisk', ['--json', disk])).stdout) as { partitiontable: { label: string; partitions: Array<{ name: string; type: string; uuid: string; start: number; size: number }> } }
  t.equal(dump.partitiontable.label, 'gpt')
  t.same(dump.partitiontable.partitions.map((p) => [p.name, p.type.toUpperCase(), p.uuid.toLowerCase(), p.start * 512]),
    placed.map((p) => [p.name, p.type, uuids[p.name as keyof typeof uuids], p.offsetBytes]))
})

t.test('boot entries: read-only root by PARTUUID, serial console last, no editor, boot counting by name', async (t) => {
  const entry = loaderEntry('a', '22222222-2222-4222-8222-222222222222', '6.12.0-test')
  t.match(entry, /^linux \/a\/vmlinuz$/m)
  t.match(entry, /^initrd \/a\/initrd\.img$/m)
  const options = /^options (.*)$/m.exec(entry)?.[1]?.split(' ') ?? []
  t.ok(options.includes('ro'), 'root mounted read-only')
  t.ok(options.includes('root=PARTUUID=22222222-2222-4222-8222-222222222222'))
  const consoles = options.filter((o) => o.startsWith('console='))
  t.same(consoles, KERNEL_CONSOLES.split(' '))
  t.equal(consoles.at(-1), 'console=ttyS0,115200', '/dev/console is the serial port (the gateway\'s stderr goes there)')
  t.match(LOADER_CONF, /^editor no$/m, 'nobody edits the kernel command line at the console')
  t.match(LOADER_CONF, /^default pbxgw-\*$/m)
  // The way back to DHCP at the console: its own entry, never the default, same slot and root, one flag more.
  const recovery = recoveryEntry('a', '22222222-2222-4222-8222-222222222222', '6.12.0-test')
  t.notOk(new RegExp(`^${'pbxgw-*'.replace('*', '.*')}$`).test(recoveryEntryFile('a')), `${recoveryEntryFile('a')} does not match the default pattern`)
  t.match(recovery, /^title .*network back to DHCP/m, 'the menu names what it does')
  t.same(/^options (.*)$/m.exec(recovery)?.[1]?.split(' '), [...options, 'pbxgw.network=dhcp'], 'the normal options plus pbxgw.network=dhcp')
  t.match(recovery, /^linux \/a\/vmlinuz$/m, 'the same slot\'s kernel')
})

t.test('root read-only with /var on the data partition, bounded journal, DHCP, mDNS, console issue link', async (t) => {
  const fstab = (await readFile(join(ROOTFS, 'etc/fstab'), 'utf8')).split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.trim().split(/\s+/))
  t.same(fstab.find((f) => f[1] === '/var')?.slice(0, 3), ['PARTLABEL=data', '/var', 'ext4'])
  t.match(fstab.find((f) => f[1] === '/var')?.[3] ?? '', /x-systemd\.growfs/)
  t.equal(fstab.find((f) => f[1] === '/tmp')?.[2], 'tmpfs')
  t.notOk(fstab.some((f) => f[1] === '/'), 'no root line: each slot\'s boot entry names its root')

  const journald = parseUnit(await readFile(join(ROOTFS, 'etc/systemd/journald.conf.d/pbxgw.conf'), 'utf8'))
  t.match(journald.get('Journal')?.get('SystemMaxUse')?.[0] ?? '', /^\d+M$/)

  const network = parseUnit(await readFile(join(ROOTFS, 'etc/systemd/network/20-wired.network'), 'utf8'))
  t.same(network.get('Match')?.get('Name'), ['en* eth*'])
  t.same(network.get('Network')?.get('DHCP'), ['yes'])
  t.same(network.get('DHCPv4')?.get('ClientIdentifier'), ['mac'], 'the lease survives the per-boot machine id')

  const avahi = await readFile(join(ROOTFS, 'etc/avahi/services/pbxgw.service'), 'utf8')
  t.match(avahi, /<type>_https\._tcp<\/type>/)
  t.match(avahi, /<port>443<\/port>/)

  const tmpfiles = await readFile(join(ROOTFS, 'usr/lib/tmpfiles.d/pbxgw.conf'), 'utf8')
  t.match(tmpfiles, /^d \/run\/issue\.d /m)
  t.match(tmpfiles, /^L \/run\/issue\.d\/50-pbxgw\.issue\s.*\/run\/pbx-gateway\/console\.issue$/m)

  const sysusers = await readFile(join(ROOTFS, 'usr/lib/sysusers.d/pbxgw.conf'), 'utf8')
  t.match(sysusers, /^u pbxgw \d+ /m)

  const script = join(ROOTFS, 'usr/libexec/pbx-gateway/set-hostname')
  await access(script, constants.X_OK)
  t.ok(((await stat(script)).mode & 0o111) !== 0, 'the hostname script is executable')
  await exec('sh', ['-n', script])
  t.match(await readFile(script, 'utf8'), /pbxgw-\$suffix/)
})

t.test('package set and units: no compilers or X, SSH installed but off, updates off, every unit of ours enabled', async (t) => {
  for (const forbidden of ['gcc', 'build-essential', 'xserver-xorg', 'nodejs', 'unattended-upgrades']) t.notOk((BASE_PACKAGES as readonly string[]).includes(forbidden), `no ${forbidden}`)
  for (const needed of ['avahi-daemon', 'libnss-mdns', 'systemd-timesyncd', 'systemd-boot-efi', 'linux-image-amd64']) t.ok((BASE_PACKAGES as readonly string[]).includes(needed), `has ${needed}`)
  t.ok(ENABLE_UNITS.includes('pbx-gateway.service') && ENABLE_UNITS.includes('pbxgw-hostname.service'))
  // Every unit of ours that can be enabled is: a unit left out of the list does nothing on the box.
  for (const unit of await readdir('firmware/systemd')) {
    const text = await readFile(join('firmware/systemd', unit), 'utf8')
    if (/^\[Install\]/m.test(text)) t.ok(ENABLE_UNITS.includes(unit), `${unit} is enabled in the image`)
  }
  // The root scripts the apply units run are in the image's root, executable and valid sh.
  for (const script of ['usr/libexec/pbxgw/network-apply', 'usr/libexec/pbxgw/ssh-apply', 'usr/sbin/pbxgw-reset-network']) {
    t.ok(((await stat(join(ROOTFS, script))).mode & 0o111) !== 0, `${script} is executable`)
    await exec('sh', ['-n', join(ROOTFS, script)])
  }
  t.same(DISABLE_UNITS, ['ssh.service', 'ssh.socket'])
  t.ok(MASK_UNITS.includes('apt-daily-upgrade.timer'))
  t.same(runtimePackages('import Fastify from "fastify";\nconst t = { target: "pino-pretty" };\nimport("ws/wrapper.mjs")', ['fastify', 'pino-pretty', 'ws', 'pg', '@azure/msal-node']), ['fastify', 'pino-pretty', 'ws'])
})

t.test('the build and the boot test explain themselves and refuse what they cannot do', async (t) => {
  const help = await cli('firmware/image/build.ts', ['--help'])
  t.equal(help.code, 0, help.stderr)
  t.match(help.stdout, /--target vm/)
  t.match(help.stdout, /--target pi .*Raspberry Pi 4\/5/)
  // Accepted, then refused for the bad version before anything is built (this test may run as root).
  const pi = await cli('firmware/image/build.ts', ['--target', 'pi', '--node', '24'])
  t.equal(pi.code, 2)
  t.match(pi.stderr, /--node takes an exact version/)
  const wrong = await cli('firmware/image/build.ts', ['--target', 'toaster'])
  t.equal(wrong.code, 2)
  t.match(wrong.stderr, /--target must be vm or pi/)
  const updateHelp = await cli('firmware/image/update-test.ts', ['--help'])
  t.equal(updateHelp.code, 0, updateHelp.stderr)
  t.match(updateHelp.stdout, /--bundle FILE/)
  t.match(updateHelp.stdout, /npm run image -- --target vm --version 2\.0\.0 --bundle/, 'it says how to make its inputs')
  const bundleElsewhere = await cli('firmware/image/build.ts', ['--target', 'pi', '--bundle'])
  t.equal(bundleElsewhere.code, 2)
  t.match(bundleElsewhere.stderr, /--bundle is for --target vm/)
  const badVersion = await cli('firmware/image/build.ts', ['--target', 'vm', '--version', '2.0 beta'])
  t.equal(badVersion.code, 2)
  t.match(badVersion.stderr, /--version takes letters, digits/)
  const testHelp = await cli('firmware/image/boot-test.ts', ['--help'])
  t.equal(testHelp.code, 0, testHelp.stderr)
  t.match(testHelp.stdout, /qemu-system-x86_64/)
})

t.test('the first boot\'s compile cache is made with the unit\'s own Node options and cache folder', async (t) => {
  const launch = unitNodeLaunch(await readFile('firmware/systemd/pbx-gateway.service', 'utf8'))
  t.same(launch.nodeArgs, ['--max-semi-space-size=1', '--optimize-for-size', '--no-turbofan', '--no-maglev'], 'the V8 flags of ExecStart (a cache made with other flags is refused)')
  t.equal(launch.cacheDir, '/var/cache/pbx-gateway/compile-cache', 'the cache folder the unit points Node at, under its CacheDirectory')
  t.equal(launch.env.MALLOC_ARENA_MAX, '2', 'and the unit\'s environment, which the warm-up run and bench:memory use too')
  t.throws(() => unitNodeLaunch('[Service]\nExecStart=/usr/bin/env true\n'), /no ExecStart=/, 'a unit the build cannot match is an error in words')
  t.throws(() => unitNodeLaunch('[Service]\nExecStart=/opt/pbx-gateway/node/bin/node dist/gateway.js\n'), /NODE_COMPILE_CACHE/, 'so is one without a cache folder')
})

t.test('A/B updates: RAUC names both slots, trusts the keyring the gateway checks with, switches through boot-slot', async (t) => {
  const conf = await readFile(join(ROOTFS, 'etc/rauc/system.conf'), 'utf8')
  const value = (key: string) => new RegExp(`^${key}=(.*)$`, 'm').exec(conf)?.[1]
  t.equal(value('compatible'), VM_COMPATIBLE, 'the compatible string the bundles carry')
  t.equal(value('bootloader'), 'custom')
  t.equal(value('bundle-formats'), '-plain', 'verity bundles only')
  t.equal(value('mountprefix'), '/run/rauc', 'the read-only root has no writable /mnt')
  const backend = value('bootloader-custom-backend') ?? ''
  t.ok(((await stat(join(ROOTFS, backend.slice(1)))).mode & 0o111) !== 0, `${backend} is in the root and executable`)
  await exec('sh', ['-n', join(ROOTFS, backend.slice(1))])
  await exec('sh', ['-n', join(ROOTFS, 'usr/libexec/pbxgw/trial-check')])
  t.match(conf, /device=\/dev\/disk\/by-partlabel\/root-a\ntype=ext4\nbootname=A/)
  t.match(conf, /device=\/dev\/disk\/by-partlabel\/root-b\ntype=ext4\nbootname=B/)
  const gateway = JSON.parse(await readFile(join(ROOTFS, 'etc/pbx-gateway/gateway.json'), 'utf8')) as { updates?: { raucKeyring?: string } }
  t.equal(gateway.updates?.raucKeyring, /^path=(.*)$/m.exec(conf)?.[1], 'the gateway checks bundles against RAUC\'s keyring')
  t.ok(BASE_PACKAGES.includes('rauc'))
  t.ok(MASK_UNITS.includes('systemd-bless-boot.service'), 'nothing marks a new slot good before the gateway is healthy')
  t.ok(ENABLE_UNITS.includes('pbxgw-trial-check.service'))
  const entry = loaderEntry('b', '22222222-2222-4222-8222-222222222222', '7')
  t.match(entry, /^sort-key pbxgw$/m, 'sort-key: systemd-boot orders by version')
  t.match(entry, /^version 7$/m)
  t.match(entry, / rauc\.slot=B( |$)/m, 'RAUC learns the booted slot from the command line')
  const templates = entryTemplates()
  t.match(templates['slot.conf.in'], /^linux \/@slot@\/vmlinuz$/m)
  t.match(templates['slot.conf.in'], /rauc\.slot=@SLOT@/)
  t.match(bundleManifest({ compatible: VM_COMPATIBLE, version: '2.0.0', build: 'x' }), /^\[bundle\]\nformat=verity$/m)
})
