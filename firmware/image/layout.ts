/**
 * The VM image's disk: what the build writes and what the recipe test checks. One place, so the partition table,
 * the boot loader entries and the README's table cannot drift apart.
 */

/** GPT partition type GUIDs (UEFI spec and the Discoverable Partitions Specification). */
export const PARTITION_TYPES = {
  esp: 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B',
  rootX86_64: '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709',
  linuxGeneric: '0FC63DAF-8483-4772-8E79-3D69D8477DE4',
} as const

export interface PartitionSpec {
  /** The GPT partition name (PARTLABEL): fstab and the updater find partitions by it. */
  name: 'esp' | 'root-a' | 'root-b' | 'data'
  type: string
  sizeMiB: number
  /** What the build puts there. */
  content: 'esp' | 'rootfs' | 'empty' | 'var'
  purpose: string
}

/**
 * Root slots are 1 GiB (the root file system is about half that) so an update can grow; the data partition
 * starts small and is grown to fill the disk on first boot (systemd-repart, x-systemd.growfs).
 */
export const VM_PARTITIONS: readonly PartitionSpec[] = [
  { name: 'esp', type: PARTITION_TYPES.esp, sizeMiB: 256, content: 'esp', purpose: 'systemd-boot, kernel and initrd of each slot, loader entries with boot counting' },
  { name: 'root-a', type: PARTITION_TYPES.rootX86_64, sizeMiB: 1024, content: 'rootfs', purpose: 'root file system of slot A, read-only' },
  { name: 'root-b', type: PARTITION_TYPES.rootX86_64, sizeMiB: 1024, content: 'empty', purpose: 'slot B, written by the first update (empty in a new image)' },
  { name: 'data', type: PARTITION_TYPES.linuxGeneric, sizeMiB: 256, content: 'var', purpose: '/var: the gateway\'s state in /var/lib/pbx-gateway, the journal; grown on first boot' },
]

/** First partition starts at 1 MiB; the backup GPT takes the last 33 sectors, rounded up to 1 MiB. */
export const FIRST_LBA_MIB = 1
export const TAIL_MIB = 1

export function diskSizeMiB(partitions: readonly PartitionSpec[] = VM_PARTITIONS): number {
  return FIRST_LBA_MIB + partitions.reduce((sum, p) => sum + p.sizeMiB, 0) + TAIL_MIB
}

/** Start of each partition in bytes, in table order. */
export function partitionOffsets(partitions: readonly PartitionSpec[] = VM_PARTITIONS): Array<PartitionSpec & { offsetBytes: number; sizeBytes: number }> {
  let mib = FIRST_LBA_MIB
  return partitions.map((p) => {
    const placed = { ...p, offsetBytes: mib * 1024 * 1024, sizeBytes: p.sizeMiB * 1024 * 1024 }
    mib += p.sizeMiB
    return placed
  })
}

/** The sfdisk script for the table, with fixed partition UUIDs (the loader entries name root by PARTUUID). */
export function sfdiskScript(uuids: Readonly<Record<PartitionSpec['name'], string>>, partitions: readonly PartitionSpec[] = VM_PARTITIONS): string {
  const lines = ['label: gpt', 'unit: sectors', `first-lba: ${(FIRST_LBA_MIB * 1024 * 1024) / 512}`]
  for (const p of partitionOffsets(partitions)) {
    lines.push(`start=${p.offsetBytes / 512}, size=${p.sizeBytes / 512}, type=${p.type}, name=${p.name}, uuid=${uuids[p.name]}`)
  }
  return lines.join('\n') + '\n'
}

/**
 * Kernel command line. The last console= is /dev/console, where the gateway's stderr (the setup code) goes:
 * the serial port, read by the boot test and by a serial cable; tty1 (the screen) gets the kernel's messages and a
 * login prompt with the console screen's issue file.
 */
export const KERNEL_CONSOLES = 'console=tty1 console=ttyS0,115200'

export function loaderEntry(slot: 'a' | 'b', rootPartUuid: string, kernelVersion: string): string {
  return [
    `title PBX presence gateway (slot ${slot.toUpperCase()})`,
    `version ${kernelVersion}`,
    `linux /${slot}/vmlinuz`,
    `initrd /${slot}/initrd.img`,
    `options root=PARTUUID=${rootPartUuid} ro rootwait ${KERNEL_CONSOLES} loglevel=4 systemd.show_status=error`,
    '',
  ].join('\n')
}

/**
 * systemd-boot: no menu (timeout 0; hold a key at power-on to see it), no editing of the kernel command line (that
 * would give anyone at the console a root shell with init=/bin/sh). Entries are pbxgw-<slot>[+tries].conf; the
 * highest version wins, an entry with 0 tries left is tried last (boot counting, for the A/B updater).
 */
export const LOADER_CONF = ['default pbxgw-*', 'timeout 0', 'editor no', 'auto-entries no', 'auto-firmware no', ''].join('\n')

/** The image files under dist/images/ for the VM target. */
export const VM_IMAGE_BASENAME = 'pbx-gateway-vm-x86_64'
