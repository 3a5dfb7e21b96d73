/**
 * How the boot test starts the Raspberry Pi image in qemu-system-aarch64 (TCG, the "virt" board, Cortex-A72 as in
 * a Pi 4): QEMU has no Pi 4/5 board, so its own firmware cannot run; the kernel, initrd and kernel command line
 * are taken from the image's boot partition (the files the Pi firmware would load) and given to QEMU directly,
 * and the image is the virtio disk, so root A, the data partition and everything after the kernel are the Pi's.
 * Only the serial device differs: the virt board's PL011 is ttyAMA0.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { partitionOffsets, PI_PARTITIONS } from './layout.js'
import { MTOOLS_ENV, run, StepFailure } from './steps.js'

export interface QemuMachine {
  binary: string
  /** The board, firmware or kernel, and display: everything but the disk, network, serial and monitor. */
  args: readonly string[]
  /** The apt package that has the binary. */
  pkg: string
  /** Where the data partition (/var) starts in the image: the boot test reads the guest's journal there. */
  dataOffsetBytes: number
}

/** The virt board's serial console, in the place of the Pi's (cmdline.txt's other words stay as they are). */
export function qemuCmdline(piCmdline: string, serial = 'ttyAMA0'): string {
  const words = piCmdline.trim().split(/\s+/).filter((w) => !w.startsWith('console='))
  return [`console=${serial},115200`, 'console=tty1', ...words].join(' ')
}

export async function piMachine(image: string, work: string): Promise<QemuMachine> {
  const boot = partitionOffsets(PI_PARTITIONS).find((p) => p.content === 'pi-firmware')
  const data = partitionOffsets(PI_PARTITIONS).find((p) => p.name === 'data')
  if (!boot || !data) throw new Error('the Pi layout has no boot or data partition')
  for (const file of ['vmlinuz', 'initrd.img', 'cmdline.txt']) {
    await run('mcopy', ['-o', '-i', `${image}@@${boot.offsetBytes}`, `::/${file}`, join(work, file)], { env: MTOOLS_ENV }).catch((err: unknown) => {
      throw new StepFailure(`${file} could not be read from the image's boot partition (${(err as Error).message}): is ${image} a Pi image (npm run image -- --target pi)?`)
    })
  }
  const cmdline = qemuCmdline(await readFile(join(work, 'cmdline.txt'), 'utf8'))
  return {
    binary: 'qemu-system-aarch64',
    pkg: 'qemu-system-arm',
    args: ['-machine', 'virt', '-cpu', 'cortex-a72', '-kernel', join(work, 'vmlinuz'), '-initrd', join(work, 'initrd.img'), '-append', cmdline],
    dataOffsetBytes: data.offsetBytes,
  }
}
