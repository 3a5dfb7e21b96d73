/**
 * Checks a built Raspberry Pi image file without mounting anything, as a Pi's firmware and Debian would find it:
 * the MBR (sfdisk -J), the boot partition's files (mtools at the partition's offset), root A and data (debugfs on the
 * ext4 at its offset). Prints each check with what it saw; exits 1 naming every failed one.
 *
 *   npm run image:check-pi [-- --image dist/images/pbx-gateway-pi-arm64.img]
 */
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { lstat, mkdtemp, open, readFile, readlink, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { mbrPartUuid, partitionOffsets, PI_BOOT_LABEL, PI_IMAGE_BASENAME, PI_PARTITIONS, piConfigTxt, piFstab } from './layout.js'
import { DISABLE_UNITS, ENABLE_UNITS, PI_INITRD_MODULES, PI_MASK_UNITS } from './recipe.js'
import { initrdNames } from './initrd.js'
import { missingPackages, MTOOLS_ENV, run, StepFailure } from './steps.js'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

const HELP = `npm run image:check-pi [-- --image FILE]

Reads a built Raspberry Pi image (default dist/images/${PI_IMAGE_BASENAME}.img) without mounting it and
checks: the MBR and its four partitions; the boot partition's firmware, dtbs, kernel, initrd,
config.txt and cmdline.txt (root=PARTUUID of root A); the initrd's drivers; root A's gateway, Node,
units, first-boot services, locked root, no SSH host keys, fstab; the data partition; root B empty.
Needs sfdisk (fdisk), mtools, debugfs (e2fsprogs), zstd.
`

interface Result { ok: boolean; name: string; detail: string }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { image: { type: 'string' }, help: { type: 'boolean', default: false } } })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const image = resolve(values.image ?? join(REPO, 'dist', 'images', `${PI_IMAGE_BASENAME}.img`))
  if (!existsSync(image)) throw new StepFailure(`no image at ${image}: build it with npm run image -- --target pi (as root)`)
  const missing = missingPackages([['sfdisk', 'fdisk'], ['mcopy', 'mtools'], ['debugfs', 'e2fsprogs'], ['zstd', 'zstd']])
  if (missing.length) throw new StepFailure(`missing tools; install them with: apt-get install -y ${missing.join(' ')}`)
  const work = await mkdtemp(join(tmpdir(), 'pi-image-check-'))
  const results: Result[] = []
  const check = async (name: string, probe: () => Promise<string>): Promise<void> => {
    try {
      const detail = await probe()
      results.push({ ok: true, name, detail })
      process.stdout.write(`PASS ${name}: ${detail}\n`)
    } catch (err) {
      results.push({ ok: false, name, detail: (err as Error).message })
      process.stdout.write(`FAIL ${name}: ${(err as Error).message}\n`)
    }
  }
  const fail = (message: string): never => { throw new Error(message) }

  const placed = partitionOffsets(PI_PARTITIONS)
  const at = (name: string) => placed.find((p) => p.name === name) ?? fail(`no ${name} in the layout`)
  const boot = at('boot')
  const rootA = at('root-a')
  const data = at('data')
  const mtools = (tool: string, args: string[]) => run(tool, ['-i', `${image}@@${boot.offsetBytes}`, ...args], { env: MTOOLS_ENV })
  const debugfs = (offset: number, request: string) => run('debugfs', ['-R', request, `${image}?offset=${offset}`])
  let diskId = ''
  let kernelVersion = ''

  await check('MBR: boot (FAT32 LBA), root-a, root-b, data at the layout\'s offsets', async () => {
    const table = (JSON.parse(await run('sfdisk', ['-J', image])) as { partitiontable: { label: string; id: string; partitions: Array<{ start: number; size: number; type: string }> } }).partitiontable
    if (table.label !== 'dos') fail(`label is ${table.label}, not dos (MBR)`)
    diskId = table.id.replace(/^0x/, '').toLowerCase()
    const seen = table.partitions.map((p) => `${p.start * 512}+${p.size * 512}:${p.type}`)
    const want = placed.map((p) => `${p.offsetBytes}+${p.sizeBytes}:${p.type}`)
    if (seen.join(' ') !== want.join(' ')) fail(`partitions ${seen.join(' ')}, expected ${want.join(' ')}`)
    return `disk id 0x${diskId}, ${table.partitions.length} primary partitions ${PI_PARTITIONS.map((p) => `${p.name} ${p.sizeMiB} MiB`).join(', ')}`
  })

  await check('boot partition: Pi firmware, dtbs of Pi 4 and Pi 5, kernel, initrd', async () => {
    const label = await mtools('mlabel', ['-s', '::']).catch(() => '')
    if (!label.includes(PI_BOOT_LABEL)) fail(`FAT label is "${label.trim()}", fstab mounts LABEL=${PI_BOOT_LABEL}`)
    const listing = (await mtools('mdir', ['-b', '::/'])).split('\n').map((l) => l.trim().replace(/^::\//, '')).filter(Boolean)
    const need = ['start4.elf', 'fixup4.dat', 'config.txt', 'cmdline.txt', 'vmlinuz', 'initrd.img', 'bcm2711-rpi-4-b.dtb', 'bcm2712-rpi-5-b.dtb']
    const absent = need.filter((f) => !listing.includes(f))
    if (absent.length) fail(`missing ${absent.join(', ')} (has ${listing.join(' ')})`)
    return `${listing.length} entries, including ${need.join(', ')}`
  })

  await check('config.txt: 64-bit, upstream kernel, vmlinuz + initrd.img, serial console on', async () => {
    const text = await mtools('mtype', ['::/config.txt'])
    if (text !== piConfigTxt()) fail(`config.txt differs from the layout's:\n${text}`)
    for (const line of ['arm_64bit=1', 'kernel=vmlinuz', 'initramfs initrd.img followkernel', 'enable_uart=1']) if (!text.split('\n').includes(line)) fail(`no "${line}"`)
    return text.split('\n').filter((l) => l && !l.startsWith('#')).join('; ')
  })

  await check('cmdline.txt: root A by PARTUUID, read-only, rootwait, serial consoles then tty1', async () => {
    const words = (await mtools('mtype', ['::/cmdline.txt'])).trim().split(/\s+/)
    const want = `root=PARTUUID=${mbrPartUuid(diskId, PI_PARTITIONS.indexOf(PI_PARTITIONS.find((p) => p.name === 'root-a') ?? fail('no root-a')) + 1)}`
    if (!words.includes(want)) fail(`no ${want} in ${words.join(' ')}`)
    for (const w of ['ro', 'rootwait']) if (!words.includes(w)) fail(`no "${w}"`)
    if (words.filter((w) => w.startsWith('console=')).at(-1) !== 'console=tty1') fail('the last console is not tty1')
    return words.join(' ')
  })

  await check('kernel and initrd on the boot partition are root A\'s, an arm64 kernel', async () => {
    const modulesDir = await debugfs(rootA.offsetBytes, 'ls -p /usr/lib/modules')
    kernelVersion = modulesDir.split('\n').map((l) => l.split('/')[5] ?? '').find((n) => /^\d+\.\d+/.test(n)) ?? fail(`no kernel under /usr/lib/modules of root A: ${modulesDir}`)
    for (const [onBoot, inRoot] of [['vmlinuz', `/boot/vmlinuz-${kernelVersion}`], ['initrd.img', `/boot/initrd.img-${kernelVersion}`]] as const) {
      await mtools('mcopy', [`::/${onBoot}`, join(work, onBoot)])
      await debugfs(rootA.offsetBytes, `dump ${inRoot} ${join(work, `root-${onBoot}`)}`)
      const sum = async (f: string) => createHash('sha256').update(await readFile(f)).digest('hex')
      if ((await sum(join(work, onBoot))) !== (await sum(join(work, `root-${onBoot}`)))) fail(`${onBoot} on the boot partition is not root A's ${inRoot}`)
    }
    const kernel = await readFile(join(work, 'vmlinuz'))
    const image = kernel[0] === 0x1f && kernel[1] === 0x8b ? gunzipSync(kernel) : kernel
    // The arm64 Image header: "ARM\x64" at byte 56.
    if (image.toString('latin1', 56, 60) !== 'ARM\x64') fail('vmlinuz is not an arm64 Image')
    return `kernel ${kernelVersion} (arm64 Image, ${(kernel.length / 1048576).toFixed(1)} MiB), initrd ${((await readFile(join(work, 'initrd.img'))).length / 1048576).toFixed(1)} MiB, both identical to root A's /boot`
  })

  await check('initrd: SD card, USB disk and virtio drivers (in it or built into the kernel)', async () => {
    const names = await initrdNames(await readFile(join(work, 'initrd.img')), join(work, 'initrd.cpio'))
    await debugfs(rootA.offsetBytes, `dump /usr/lib/modules/${kernelVersion}/modules.builtin ${join(work, 'modules.builtin')}`)
    const builtin = (await readFile(join(work, 'modules.builtin'), 'utf8')).split('\n')
    const base = (path: string) => (path.split('/').at(-1) ?? '').replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_')
    const inInitrd = new Set(names.filter((n) => /\.ko(\.(xz|zst|gz))?$/.test(n)).map(base))
    const inKernel = new Set(builtin.filter(Boolean).map(base))
    const where = PI_INITRD_MODULES.map((m) => [m, inInitrd.has(m) ? 'initrd' : inKernel.has(m) ? 'built in' : 'missing'] as const)
    const absent = where.filter(([, w]) => w === 'missing').map(([m]) => m)
    if (absent.length) fail(`not in the initrd and not built into ${kernelVersion}: ${absent.join(', ')}`)
    return `${inInitrd.size} modules in the initrd; ${where.map(([m, w]) => `${m} (${w})`).join(', ')}`
  })

  await check('root A: the gateway, its Node (arm64), its unit, the README', async () => {
    await debugfs(rootA.offsetBytes, `dump /usr/lib/systemd/system/pbx-gateway.service ${join(work, 'unit')}`)
    if ((await readFile(join(work, 'unit'), 'utf8')) !== (await readFile(join(REPO, 'firmware', 'systemd', 'pbx-gateway.service'), 'utf8'))) fail('pbx-gateway.service differs from firmware/systemd/')
    const listing = await debugfs(rootA.offsetBytes, 'ls -l /opt/pbx-gateway/dist')
    if (!/\sgateway\.js\s*$/m.test(listing)) fail(`no /opt/pbx-gateway/dist/gateway.js: ${listing}`)
    await debugfs(rootA.offsetBytes, `dump /opt/pbx-gateway/dist/gateway.js ${join(work, 'gateway.js')}`)
    if ((await readFile(join(work, 'gateway.js'))).compare(await readFile(join(REPO, 'dist', 'gateway.js'))) !== 0) fail('the image\'s gateway.js is not this checkout\'s dist/gateway.js')
    await debugfs(rootA.offsetBytes, `dump /opt/pbx-gateway/node/bin/node ${join(work, 'node')}`)
    const node = await readFile(join(work, 'node'))
    if (node.readUInt16LE(18) !== 0xb7) fail('/opt/pbx-gateway/node/bin/node is not an arm64 program')
    const modules = await debugfs(rootA.offsetBytes, 'ls /opt/pbx-gateway/node_modules')
    if (!/\bfastify\b/.test(modules)) fail('no fastify in /opt/pbx-gateway/node_modules')
    return `gateway.js as in dist/, node ${(node.length / 1048576).toFixed(0)} MiB aarch64, node_modules present, unit as in firmware/systemd/`
  })

  await check('root A: units enabled, SSH off, repart masked, first-boot services in place', async () => {
    const etc = join(work, 'etc')
    await debugfs(rootA.offsetBytes, `rdump /etc ${work}`)
    const links = new Map<string, string>()
    const walk = async (dir: string): Promise<void> => {
      for (const name of await readdir(dir)) {
        const path = join(dir, name)
        const s = await lstat(path)
        if (s.isSymbolicLink()) links.set(path.slice(etc.length), await readlink(path))
        else if (s.isDirectory()) await walk(path)
      }
    }
    await walk(join(etc, 'systemd', 'system'))
    const enabled = (unit: string) => [...links.entries()].some(([path, target]) => /\.(wants|requires)\//.test(path) && path.endsWith(`/${unit}`) && target !== '/dev/null')
    const masked = (unit: string) => links.get(`/systemd/system/${unit}`) === '/dev/null'
    const off = ENABLE_UNITS.filter((u) => !enabled(u) && !PI_MASK_UNITS.includes(u))
    if (off.length) fail(`not enabled: ${off.join(', ')}`)
    const on = DISABLE_UNITS.filter(enabled)
    if (on.length) fail(`enabled but must be off: ${on.join(', ')}`)
    const notMasked = PI_MASK_UNITS.filter((u) => !masked(u))
    if (notMasked.length) fail(`not masked: ${notMasked.join(', ')}`)
    const shadow = (await readFile(join(etc, 'shadow'), 'utf8')).split('\n').find((l) => l.startsWith('root:')) ?? fail('no root in /etc/shadow')
    const hash = shadow.split(':')[1] ?? ''
    if (!(hash.startsWith('!') || hash === '*')) fail('root has a usable password')
    const hostKeys = (await readdir(join(etc, 'ssh'))).filter((n) => n.startsWith('ssh_host_'))
    if (hostKeys.length) fail(`SSH host keys made at build time: ${hostKeys.join(', ')}`)
    if ((await readFile(join(etc, 'fstab'), 'utf8')) !== piFstab()) fail('/etc/fstab is not the Pi fstab (LABEL=data on /var)')
    if ((await readFile(join(etc, 'machine-id'), 'utf8')) !== '') fail('/etc/machine-id is not empty (read-only root: one per boot)')
    for (const file of ['pbx-gateway/gateway.json', 'systemd/network/20-wired.network', 'avahi/services/pbxgw.service']) {
      if ((await readFile(join(etc, file), 'utf8')) !== (await readFile(join(REPO, 'firmware', 'image', 'rootfs', 'etc', file), 'utf8'))) fail(`/etc/${file} differs from firmware/image/rootfs/`)
    }
    const firstBoot = ['pbxgw-hostname.service', 'pbx-gateway.service', 'pbxgw-network-apply.service', 'pbxgw-ssh-apply.path', 'pbxgw-console-reload.path']
    const bootDir = await debugfs(rootA.offsetBytes, 'ls -l /boot/firmware')
    if (bootDir.split('\n').filter((l) => l.trim() && !/\s\.\.?\s*$/.test(l)).length) fail(`/boot/firmware in the root is not empty (the boot partition's mount point): ${bootDir}`)
    return `${ENABLE_UNITS.length - PI_MASK_UNITS.filter((u) => ENABLE_UNITS.includes(u)).length} units enabled (${firstBoot.join(', ')} among them), ssh.service/ssh.socket off, ${PI_MASK_UNITS.length} masked incl. systemd-repart, root locked, no host keys, Pi fstab, empty machine-id, config files as in the repository`
  })

  await check('data partition: /var with the journal directory; root B empty', async () => {
    const label = await run('dumpe2fs', ['-h', `${image}?offset=${data.offsetBytes}`]).catch((err: unknown) => fail(`no ext4 at the data partition: ${(err as Error).message}`))
    if (!/^Filesystem volume name:\s+data$/m.test(label)) fail('the data file system is not labelled "data" (fstab mounts LABEL=data)')
    const log = await debugfs(data.offsetBytes, 'ls -p /log')
    if (!/\/journal\//.test(log)) fail('no /log/journal on the data partition')
    const rootB = at('root-b')
    const head = Buffer.alloc(65536)
    const handle = await open(image, 'r')
    await handle.read(head, 0, head.length, rootB.offsetBytes)
    await handle.close()
    if (head.some((b) => b !== 0)) fail('root B is not empty: an update would not be the only writer')
    return 'ext4 "data" with /log/journal; root B holds zeros'
  })

  await rm(work, { recursive: true, force: true })
  const failed = results.filter((r) => !r.ok)
  process.stdout.write(`\n${results.length - failed.length} of ${results.length} checks passed on ${image}\n`)
  if (failed.length) process.exit(1)
}

main().catch((err: unknown) => {
  process.stderr.write(`image check failed: ${err instanceof StepFailure ? err.message : (err as Error).stack ?? String(err)}\n`)
  process.exit(err instanceof StepFailure ? 2 : 1)
})
