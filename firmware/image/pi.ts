/**
 * The Raspberry Pi 4/5 image's own steps: arm64 emulation for the build (qemu-aarch64-static through binfmt_misc,
 * so mmdebstrap can run the arm64 packages' scripts), the Pi's FAT boot partition and the MBR disk, compressed for
 * Raspberry Pi Imager. The root file system is the VM's, made by build.ts from the Pi recipe (target.ts PI_ROOT).
 * Like the VM disk, written without mounts: mkfs.vfat -C plus mtools, mkfs.ext4 -E offset= -d, sfdisk on the file.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Rootfs } from './build.js'
import { diskSizeMiB, mbrPartUuid, partitionOffsets, PI_BOOT_LABEL, PI_IMAGE_BASENAME, PI_PARTITIONS, piCmdline, piConfigTxt, sfdiskScriptMbr, type PartitionSpec } from './layout.js'
import { ext4UsedBytes, mib, MTOOLS_ENV, type Progress, run, StepFailure } from './steps.js'

export const PI_REQUIRED_TOOLS: Array<[tool: string, pkg: string]> = [
  ['qemu-aarch64-static', 'qemu-user-static'], ['arch-test', 'arch-test'], ['xz', 'xz-utils'], ['debugfs', 'e2fsprogs'],
]

const BINFMT = '/proc/sys/fs/binfmt_misc'

/**
 * Makes sure this kernel runs arm64 programs through qemu-aarch64-static: mounts binfmt_misc if it is not, and
 * registers the handler qemu-user-static describes in /usr/lib/binfmt.d (or through update-binfmts) if it is
 * missing. Says what it did; fails in words if arch-test still cannot run an arm64 program.
 */
export async function ensureArm64Emulation(): Promise<string> {
  const done: string[] = []
  if (!existsSync(join(BINFMT, 'register'))) {
    await run('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]).catch((err: unknown) => {
      throw new StepFailure(`binfmt_misc is not mounted and could not be (${(err as Error).message}); mount it with: mount -t binfmt_misc binfmt_misc ${BINFMT}`)
    })
    done.push('mounted binfmt_misc')
  }
  if (!existsSync(join(BINFMT, 'qemu-aarch64'))) {
    const conf = '/usr/lib/binfmt.d/qemu-aarch64.conf'
    if (existsSync(conf)) {
      await writeFile(join(BINFMT, 'register'), (await readFile(conf, 'utf8')).trim())
      done.push(`registered ${conf}`)
    } else {
      await run('update-binfmts', ['--enable', 'qemu-aarch64'])
      done.push('update-binfmts --enable qemu-aarch64')
    }
  } else if (!(await readFile(join(BINFMT, 'qemu-aarch64'), 'utf8')).startsWith('enabled')) {
    await writeFile(join(BINFMT, 'qemu-aarch64'), '1')
    done.push('enabled qemu-aarch64')
  }
  const check = await run('arch-test', ['arm64']).catch((err: unknown) => (err as Error).message)
  if (!/arm64: ok/.test(check)) {
    throw new StepFailure(`this machine cannot run arm64 programs (arch-test arm64: ${check.trim()}); install qemu-user-static and register it: update-binfmts --enable qemu-aarch64`)
  }
  return done.length ? `${done.join(', ')}; arch-test arm64: ok` : 'already registered; arch-test arm64: ok'
}

/** The files the Pi boot partition gets from the root, by where they come from. */
export interface PiBootFiles {
  /** raspi-firmware's files (start4.elf, fixup4.dat, bootcode.bin, overlays/) in /usr/lib/raspi-firmware. */
  firmwareDir: string
  /** The kernel's device trees of the Pi boards (bcm2711-rpi-*.dtb, bcm2712-rpi-*.dtb). */
  dtbs: string[]
  kernel: string
  initrd: string
}

export async function piBootFiles(rootfs: Rootfs): Promise<PiBootFiles> {
  const firmwareDir = join(rootfs.dir, 'usr', 'lib', 'raspi-firmware')
  if (!existsSync(join(firmwareDir, 'start4.elf'))) throw new StepFailure('start4.elf is not in /usr/lib/raspi-firmware of the root (package raspi-firmware, component non-free-firmware)')
  const dtbDir = join(rootfs.dir, 'usr', 'lib', `linux-image-${rootfs.kernelVersion}`, 'broadcom')
  const dtbs = existsSync(dtbDir) ? (await readdir(dtbDir)).filter((n) => /^bcm27\d\d-.*\.dtb$/.test(n)).sort().map((n) => join(dtbDir, n)) : []
  for (const need of ['bcm2711-rpi-4-b.dtb', 'bcm2712-rpi-5-b.dtb']) {
    if (!dtbs.some((d) => d.endsWith(`/${need}`))) throw new StepFailure(`the kernel ${rootfs.kernelVersion} has no ${need} in ${dtbDir}: a kernel without the Pi's device trees cannot boot it`)
  }
  return { firmwareDir, dtbs, kernel: join(rootfs.dir, 'boot', `vmlinuz-${rootfs.kernelVersion}`), initrd: join(rootfs.dir, 'boot', `initrd.img-${rootfs.kernelVersion}`) }
}

/** The boot partition as a FAT32 file: raspi-firmware's files, the dtbs, vmlinuz, initrd.img, config.txt, cmdline.txt. */
async function buildPiBoot(files: PiBootFiles, cmdline: string, part: PartitionSpec & { sizeBytes: number }, work: string): Promise<{ file: string; count: number }> {
  const file = join(work, 'pi-boot.img')
  await rm(file, { force: true })
  await run('mkfs.vfat', ['-F', '32', '-n', PI_BOOT_LABEL, '-C', file, String(part.sizeBytes / 1024)])
  const mcopy = (sources: string[], target: string) => run('mcopy', ['-s', '-i', file, ...sources, target], { env: MTOOLS_ENV })
  const firmware = (await readdir(files.firmwareDir)).map((n) => join(files.firmwareDir, n))
  await mcopy(firmware, '::/')
  await mcopy(files.dtbs, '::/')
  await mcopy([files.kernel], '::/vmlinuz')
  await mcopy([files.initrd], '::/initrd.img')
  await writeFile(join(work, 'config.txt'), piConfigTxt())
  await writeFile(join(work, 'cmdline.txt'), `${cmdline}\n`)
  await mcopy([join(work, 'config.txt'), join(work, 'cmdline.txt')], '::/')
  return { file, count: firmware.length + files.dtbs.length + 4 }
}

/** Writes dist/images/pbx-gateway-pi-arm64.img and .img.xz from the assembled root; the steps print their times. */
export async function buildPiImage(rootfs: Rootfs, out: string, work: string, progress: Progress): Promise<{ raw: string; xz: string; rootUsedBytes: number }> {
  const raw = join(out, `${PI_IMAGE_BASENAME}.img`)
  const disk = await progress.step('disk: MBR, Pi boot partition, root-a, data (no mounts)', async () => {
    const diskId = randomBytes(4).toString('hex')
    const rootA = mbrPartUuid(diskId, PI_PARTITIONS.findIndex((p) => p.name === 'root-a') + 1)
    const files = await piBootFiles(rootfs)
    const partial = `${raw}.tmp`
    await rm(partial, { force: true })
    await run('truncate', ['-s', `${diskSizeMiB(PI_PARTITIONS)}M`, partial])
    await run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', partial], { input: sfdiskScriptMbr(diskId) })
    let rootUsedBytes = 0
    let bootFiles = 0
    for (const p of partitionOffsets(PI_PARTITIONS)) {
      if (p.content === 'pi-firmware') {
        const boot = await buildPiBoot(files, piCmdline(rootA), p, work)
        bootFiles = boot.count
        await run('dd', [`if=${boot.file}`, `of=${partial}`, 'bs=1M', `seek=${p.offsetBytes / 1024 / 1024}`, 'conv=notrunc,sparse', 'status=none'])
      } else if (p.content === 'rootfs' || p.content === 'var') {
        await run('mkfs.ext4', ['-F', '-q', '-L', p.name, '-E', `offset=${p.offsetBytes}`, '-d', p.content === 'rootfs' ? rootfs.dir : rootfs.varDir, partial, `${p.sizeBytes / 1024}k`])
        if (p.content === 'rootfs') {
          rootUsedBytes = await ext4UsedBytes(partial, p.offsetBytes)
        }
      }
    }
    await rename(partial, raw)
    return { rootUsedBytes, rootA, bootFiles }
  }, (r) => `root=PARTUUID=${r.rootA}, ${r.bootFiles} files in the boot partition, root-a holds ${mib(r.rootUsedBytes)}`)
  const xz = await progress.step('xz (for Raspberry Pi Imager, or xz -dc | dd)', async () => {
    const file = `${raw}.xz`
    await rm(file, { force: true })
    // -k: the .img stays for the boot test and the content check; 2 threads, the machines that build this are small.
    // -3: the root compresses about 10 % worse than at -6 but three times as fast (minutes under emulation load).
    await run('xz', ['-k', '-f', '-T2', '-3', raw])
    return file
  })
  return { raw, xz, rootUsedBytes: disk.rootUsedBytes }
}
