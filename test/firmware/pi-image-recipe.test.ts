/**
 * The Raspberry Pi image's recipe, checked without building it (the build takes minutes under arm64 emulation and
 * root; npm run image -- --target pi, npm run image:check-pi and npm run image:test -- --target pi do the real
 * thing): the MBR layout, config.txt, cmdline.txt, fstab, packages, initrd drivers, the QEMU command line, the
 * initrd reader the image check uses and the merged SHA256SUMS.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { runTsCli } from '../helpers/ts-cli.js'
import { qemuCmdline } from '../../firmware/image/boot-test-pi.js'
import { cpioNames } from '../../firmware/image/initrd.js'
import { diskSizeMiB, mbrPartUuid, partitionOffsets, PI_BOOT_LABEL, PI_PARTITIONS, piCmdline, piConfigTxt, piFstab, sfdiskScriptMbr } from '../../firmware/image/layout.js'
import { BASE_PACKAGES, ENABLE_UNITS, MASK_UNITS, PI_INITRD_MODULES, PI_MASK_UNITS, PI_PACKAGES } from '../../firmware/image/recipe.js'
import { mergeSha256Sums } from '../../firmware/image/steps.js'
import { PI_ROOT, VM_ROOT } from '../../firmware/image/target.js'

const exec = promisify(execFile)

t.test('the Pi disk is an MBR with boot, root-a, root-b and data, and sfdisk writes it with the disk id cmdline.txt names', async (t) => {
  t.same(PI_PARTITIONS.map((p) => p.name), ['boot', 'root-a', 'root-b', 'data'])
  t.ok(PI_PARTITIONS.length <= 4, 'primary partitions only: MBR has four')
  t.equal(PI_PARTITIONS[0]?.content, 'pi-firmware', 'the firmware reads the first partition')
  t.equal(PI_PARTITIONS[0]?.type, 'c', 'FAT32 (LBA)')
  t.same(PI_PARTITIONS.filter((p) => p.name.startsWith('root-')).map((p) => p.sizeMiB), [1024, 1024], 'two equal root slots')
  const dir = await mkdtemp(join(tmpdir(), 'pi-recipe-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const disk = join(dir, 'pi.img')
  await exec('truncate', ['-s', `${diskSizeMiB(PI_PARTITIONS)}M`, disk])
  const sfdisk = execFile('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', disk])
  const written = new Promise<number | null>((resolve) => sfdisk.on('exit', resolve))
  sfdisk.stdin?.end(sfdiskScriptMbr('1a2b3c4d'))
  t.equal(await written, 0, 'sfdisk accepts the script')
  const dump = JSON.parse((await exec('sfdisk', ['--json', disk])).stdout) as { partitiontable: { label: string; id: string; partitions: Array<{ node: string; type: string; start: number; size: number }> } }
  t.equal(dump.partitiontable.label, 'dos')
  t.equal(dump.partitiontable.id, '0x1a2b3c4d')
  t.same(dump.partitiontable.partitions.map((p) => [p.type, p.start * 512, p.size * 512]), partitionOffsets(PI_PARTITIONS).map((p) => [p.type, p.offsetBytes, p.sizeBytes]))
  t.equal(mbrPartUuid('1a2b3c4d', 2), '1a2b3c4d-02', 'PARTUUID of root A as the kernel spells it')
  t.throws(() => sfdiskScriptMbr('not-hex'), /8 lowercase hex digits/)
})

t.test('config.txt and cmdline.txt: 64-bit, fixed kernel and initrd names, root A read-only, tty1 last', async (t) => {
  const config = piConfigTxt().split('\n')
  for (const line of ['arm_64bit=1', 'upstream_kernel=1', 'kernel=vmlinuz', 'initramfs initrd.img followkernel', 'enable_uart=1']) t.ok(config.includes(line), line)
  const words = piCmdline('1a2b3c4d-02').split(' ')
  t.ok(words.includes('root=PARTUUID=1a2b3c4d-02'))
  t.ok(words.includes('ro') && words.includes('rootwait'))
  t.notOk(words.includes('rw'))
  const consoles = words.filter((w) => w.startsWith('console='))
  t.same(consoles, ['console=ttyS1,115200', 'console=ttyAMA10,115200', 'console=tty1'], 'Pi 4 mini UART, Pi 5 debug UART, then the screen')
  // Under QEMU: the virt board's PL011 in place of the Pi's, everything else from the image's cmdline.txt.
  const qemu = qemuCmdline(`${piCmdline('1a2b3c4d-02')}\n`).split(' ')
  t.same(qemu.filter((w) => w.startsWith('console=')), ['console=ttyAMA0,115200', 'console=tty1'])
  t.same(qemu.filter((w) => !w.startsWith('console=')), words.filter((w) => !w.startsWith('console=')))
})

t.test('the Pi fstab mounts /var and the boot partition by label, like the VM fstab does by partition name', async (t) => {
  const rows = (text: string) => text.split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => l.trim().split(/\s+/))
  const pi = rows(piFstab())
  const vm = rows(await readFile('firmware/image/rootfs/etc/fstab', 'utf8'))
  t.same(pi.find((r) => r[1] === '/var')?.slice(0, 3), ['LABEL=data', '/var', 'ext4'])
  t.equal(pi.find((r) => r[1] === '/var')?.[3], vm.find((r) => r[1] === '/var')?.[3], 'the same /var mount options as the VM')
  t.same(pi.find((r) => r[1] === '/boot/firmware')?.slice(0, 3), [`LABEL=${PI_BOOT_LABEL}`, '/boot/firmware', 'vfat'])
  t.same(pi.find((r) => r[1] === '/tmp'), vm.find((r) => r[1] === '/tmp'))
  t.notOk(pi.some((r) => r[1] === '/'), 'no root line: cmdline.txt names it')
  t.ok(PI_BOOT_LABEL.length <= 11, 'a FAT label has at most 11 characters')
})

t.test('Pi packages: the VM\'s set with the arm64 kernel and raspi-firmware, no systemd-boot; initrd and units', async (t) => {
  const pkgs = PI_PACKAGES as readonly string[]
  for (const p of ['linux-image-arm64', 'raspi-firmware', 'openssh-server', 'avahi-daemon', 'initramfs-tools']) t.ok(pkgs.includes(p), `has ${p}`)
  for (const p of ['linux-image-amd64', 'systemd-boot', 'systemd-boot-efi']) t.notOk(pkgs.includes(p), `no ${p}`)
  t.same(pkgs.filter((p) => !(BASE_PACKAGES as readonly string[]).includes(p)), ['linux-image-arm64', 'raspi-firmware'])
  t.same(PI_ROOT.components, ['main', 'non-free-firmware'], 'raspi-firmware is in non-free-firmware')
  t.equal(PI_ROOT.debArch, 'arm64')
  t.equal(PI_ROOT.nodeArch, 'arm64')
  t.equal(PI_ROOT.bootMountPoint, '/boot/firmware')
  for (const m of ['virtio_blk', 'virtio_pci', 'sdhci_iproc', 'mmc_block', 'usb_storage', 'ext4']) t.ok(PI_INITRD_MODULES.includes(m), `initrd has ${m}`)
  t.ok(PI_MASK_UNITS.includes('systemd-repart.service'), 'repart (GPT only) is masked on the MBR')
  for (const unit of MASK_UNITS.filter((u) => u !== 'systemd-boot-random-seed.service')) t.ok(PI_MASK_UNITS.includes(unit), `${unit} masked as on the VM`)
  t.ok(ENABLE_UNITS.includes('pbx-gateway.service'))
  // update-initramfs runs once, in the customize hook, after the packages' triggers were made no-ops.
  t.equal(PI_ROOT.hooks.filter((h) => h.startsWith('--essential-hook=') && h.includes('dpkg-divert') && h.includes('--add /usr/sbin/update-initramfs')).length, 1)
  t.equal(PI_ROOT.hooks.filter((h) => h.startsWith('--customize-hook=') && h.includes('--remove /usr/sbin/update-initramfs') && h.includes('update-initramfs -c')).length, 1)
  t.same(VM_ROOT.hooks, [], 'the VM recipe (and its cached root) is as before')
})

t.test('the image check reads a newc cpio archive (the initrd) and SHA256SUMS keeps the other target\'s lines', async (t) => {
  const entry = (name: string, body: string) => {
    const nameSize = Buffer.byteLength(name) + 1
    const fields = [0, 0o100644, 0, 0, 1, 0, Buffer.byteLength(body), 0, 0, 0, 0, nameSize, 0].map((n) => n.toString(16).padStart(8, '0')).join('')
    const head = Buffer.from(`070701${fields}${name}\0`)
    const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)])
    return Buffer.concat([pad(head), pad(Buffer.from(body))])
  }
  const archive = Buffer.concat([entry('usr/lib/modules/6.12/kernel/drivers/mmc/host/sdhci-iproc.ko.xz', 'x'), entry('init', '#!/bin/sh\n'), entry('TRAILER!!!', ''), Buffer.alloc(8), Buffer.from('after')])
  const read = cpioNames(archive)
  t.same(read.names, ['usr/lib/modules/6.12/kernel/drivers/mmc/host/sdhci-iproc.ko.xz', 'init'])
  t.equal(read.rest.toString(), 'after', 'what follows the trailer (the compressed main archive)')
  t.throws(() => cpioNames(Buffer.from('not an archive at all, long enough to have a header'.repeat(3))), /not a newc cpio header/)

  const a = 'a'.repeat(64)
  const b = 'b'.repeat(64)
  const before = `${a}  pbx-gateway-vm-x86_64.raw\n${a}  pbx-gateway-pi-arm64.img.xz\n`
  t.equal(mergeSha256Sums(before, [`${b}  pbx-gateway-pi-arm64.img.xz`]), `${b}  pbx-gateway-pi-arm64.img.xz\n${a}  pbx-gateway-vm-x86_64.raw\n`)
})

t.test('the Pi image check and the boot test explain themselves and refuse a bad target', async (t) => {
  const run = runTsCli
  const check = await run('firmware/image/check-pi-image.ts', ['--help'])
  t.equal(check.code, 0, check.stderr)
  t.match(check.stdout, /without mounting it/)
  const absent = await run('firmware/image/check-pi-image.ts', ['--image', '/nonexistent/pi.img'])
  t.equal(absent.code, 2)
  t.match(absent.stderr, /no image at \/nonexistent\/pi\.img: build it with npm run image -- --target pi/)
  const help = await run('firmware/image/boot-test.ts', ['--help'])
  t.match(help.stdout, /--target vm\|pi/)
  t.match(help.stdout, /qemu-system-aarch64 -M virt -cpu cortex-a72/)
  const wrong = await run('firmware/image/boot-test.ts', ['--target', 'toaster'])
  t.equal(wrong.code, 2)
  t.match(wrong.stderr, /--target must be vm or pi/)
})
