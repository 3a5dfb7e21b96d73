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
  /** The GPT partition name (PARTLABEL): fstab and the updater find partitions by it. On the Pi's MBR, the file system label. */
  name: 'esp' | 'boot' | 'root-a' | 'root-b' | 'data'
  type: string
  sizeMiB: number
  /** What the build puts there. */
  content: 'esp' | 'pi-firmware' | 'rootfs' | 'empty' | 'var'
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

export type VmPartitionName = 'esp' | 'root-a' | 'root-b' | 'data'

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
export function sfdiskScript(uuids: Readonly<Record<VmPartitionName, string>>, partitions: readonly PartitionSpec[] = VM_PARTITIONS): string {
  const lines = ['label: gpt', 'unit: sectors', `first-lba: ${(FIRST_LBA_MIB * 1024 * 1024) / 512}`]
  for (const p of partitionOffsets(partitions)) {
    lines.push(`start=${p.offsetBytes / 512}, size=${p.sizeBytes / 512}, type=${p.type}, name=${p.name}, uuid=${uuids[p.name as VmPartitionName]}`)
  }
  return lines.join('\n') + '\n'
}

/**
 * Kernel command line. The last console= is /dev/console, where the gateway's stderr (the setup code) goes:
 * the serial port, read by the boot test and by a serial cable; tty1 (the screen) gets the kernel's messages and a
 * login prompt with the console screen's issue file.
 */
export const KERNEL_CONSOLES = 'console=tty1 console=ttyS0,115200'

/** The sort key every entry of the box carries: systemd-boot then orders its entries by version, newest first. */
export const ENTRY_SORT_KEY = 'pbxgw'

/**
 * A slot's loader entry. `generation` is the entry's `version`: each install writes the new slot's entry with a
 * generation above every other entry's, so systemd-boot (sort-key on both, version descending, entries with no tries
 * left last) boots the newest slot that still has tries, and the older slot once the new one has used them up.
 * `rauc.slot=` tells RAUC which slot is booted. Slot and UUID may be the @slot@/@PARTUUID@ placeholders of
 * ENTRY_TEMPLATE.
 */
export function loaderEntry(slot: string, rootPartUuid: string, generation: string, extra: { title?: string; options?: string } = {}): string {
  return [
    `title ${extra.title ?? `PBX presence gateway (slot ${slot.toUpperCase()})`}`,
    `sort-key ${ENTRY_SORT_KEY}`,
    `version ${generation}`,
    `linux /${slot}/vmlinuz`,
    `initrd /${slot}/initrd.img`,
    `options root=PARTUUID=${rootPartUuid} ro rootwait ${KERNEL_CONSOLES} loglevel=4 systemd.show_status=error rauc.slot=${slot.toUpperCase()}${extra.options ? ` ${extra.options}` : ''}`,
    '',
  ].join('\n')
}

/**
 * The entries the box's boot-slot script (rootfs/usr/libexec/pbxgw/boot-slot) writes at an update, made here so the
 * build's entries and the box's cannot differ: @slot@ (a/b), @SLOT@ (A/B), @PARTUUID@, @GENERATION@.
 */
export const ENTRY_TEMPLATE_DIR = '/usr/lib/pbxgw/boot'
export function entryTemplates(): Record<'slot.conf.in' | 'recovery.conf.in', string> {
  return {
    'slot.conf.in': loaderEntry('@slot@', '@PARTUUID@', '@GENERATION@'),
    'recovery.conf.in': recoveryEntry('@slot@', '@PARTUUID@', '@GENERATION@'),
  }
}

/** Boot tries a new slot gets (systemd-boot's counter in the entry's name: pbxgw-b+3.conf). */
export const BOOT_TRIES = 3

/**
 * The way back from a wrong network setting at the console, where nobody can log in and the kernel command line
 * cannot be edited (editor no): a second entry for the same slot with pbxgw.network=dhcp, which network-apply
 * turns into "forget the setup page's network settings" for that boot. Its file name does not match the default
 * pattern (pbxgw-*), so it boots only when picked in the menu (hold Space at power-on). The A/B updater keeps it
 * pointing at the running slot.
 */
export function recoveryEntryFile(slot: string): string {
  return `recovery-dhcp-${slot}.conf`
}

export function recoveryEntry(slot: string, rootPartUuid: string, generation: string): string {
  return loaderEntry(slot, rootPartUuid, generation, { title: 'PBX presence gateway: network back to DHCP', options: 'pbxgw.network=dhcp' })
}

/**
 * systemd-boot: no menu (timeout 0; hold a key at power-on to see it), no editing of the kernel command line (that
 * would give anyone at the console a root shell with init=/bin/sh). Entries are pbxgw-<slot>[+tries].conf; the
 * highest version wins, an entry with 0 tries left is tried last (boot counting, for the A/B updater).
 */
export const LOADER_CONF = ['default pbxgw-*', 'timeout 0', 'editor no', 'auto-entries no', 'auto-firmware no', ''].join('\n')

/** The image files under dist/images/ for the VM target. */
export const VM_IMAGE_BASENAME = 'pbx-gateway-vm-x86_64'

/**
 * The Raspberry Pi 4/5 image's disk. An MBR ("dos") label, not GPT: the Pi 4's boot ROM and EEPROM boot loaders
 * before 2020-09 read only MBR, a Pi 5 reads both, and Raspberry Pi Imager, Debian's raspi images and Raspberry Pi
 * OS all ship MBR, so it is the table every Pi boots. Four primary partitions is exactly MBR's limit, so no extended
 * partition: the boot partition (the firmware reads config.txt, start4.elf, the kernel and the dtbs from the first
 * FAT partition), the two root slots for A/B updates and /var. MBR has no partition names: fstab finds /var and
 * the boot partition by file system label, the kernel finds root by PARTUUID (disk id and partition number).
 */
export const PI_PARTITION_TYPES = { fat32Lba: 'c', linux: '83' } as const

export const PI_PARTITIONS: readonly PartitionSpec[] = [
  { name: 'boot', type: PI_PARTITION_TYPES.fat32Lba, sizeMiB: 256, content: 'pi-firmware', purpose: 'Pi firmware (start4.elf, fixup4.dat), config.txt, cmdline.txt, the kernel, initrd and dtbs of the running slot' },
  { name: 'root-a', type: PI_PARTITION_TYPES.linux, sizeMiB: 1024, content: 'rootfs', purpose: 'root file system of slot A, read-only' },
  { name: 'root-b', type: PI_PARTITION_TYPES.linux, sizeMiB: 1024, content: 'empty', purpose: 'slot B, written by the first update (empty in a new image)' },
  { name: 'data', type: PI_PARTITION_TYPES.linux, sizeMiB: 256, content: 'var', purpose: '/var: the gateway\'s state in /var/lib/pbx-gateway, the journal' },
]

/** The FAT label of the Pi's boot partition; fstab mounts it by this label. */
export const PI_BOOT_LABEL = 'PIBOOT'

/** MBR partition "UUIDs" are the disk id and the partition number: 1a2b3c4d-02 is partition 2 of disk 0x1a2b3c4d. */
export function mbrPartUuid(diskId: string, partitionNumber: number): string {
  if (!/^[0-9a-f]{8}$/.test(diskId)) throw new Error(`an MBR disk id is 8 lowercase hex digits (got "${diskId}")`)
  return `${diskId}-${String(partitionNumber).padStart(2, '0')}`
}

/** The sfdisk script of the Pi's MBR table with a fixed disk id (cmdline.txt names root by PARTUUID). */
export function sfdiskScriptMbr(diskId: string, partitions: readonly PartitionSpec[] = PI_PARTITIONS): string {
  mbrPartUuid(diskId, 1)
  const lines = ['label: dos', `label-id: 0x${diskId}`, 'unit: sectors']
  for (const p of partitionOffsets(partitions)) lines.push(`start=${p.offsetBytes / 512}, size=${p.sizeBytes / 512}, type=${p.type}`)
  return lines.join('\n') + '\n'
}

/**
 * The Pi's serial consoles on the GPIO header (pins 8/10) with Debian's upstream kernel and device trees, which
 * name them differently from Raspberry Pi OS's kernel: a Pi 4's mini UART is ttyS1 (its PL011, ttyAMA0, drives
 * Bluetooth), a Pi 5's debug UART is ttyAMA10. The kernel ignores a console= whose device does not exist, so one
 * cmdline.txt serves both boards. The firmware's "serial0" alias is not used: it is rewritten for Raspberry Pi OS's
 * device names, which the upstream device trees do not have.
 */
export const PI_SERIAL_CONSOLES = ['ttyS1', 'ttyAMA10'] as const

/**
 * The Pi's kernel command line (cmdline.txt; the boot test passes the same with QEMU's serial ttyAMA0). The serial
 * consoles come first and tty1 (HDMI) last, as on Raspberry Pi OS: the last is /dev/console, where the gateway's
 * setup code goes, and the screen is what an installer without a serial cable sees. Every console gets a login prompt
 * with the console screen's issue file (setup URL, fingerprint, setup code).
 */
export function piCmdline(rootPartUuid: string, serialConsoles: readonly string[] = PI_SERIAL_CONSOLES): string {
  const consoles = [...serialConsoles.map((tty) => `console=${tty},115200`), 'console=tty1']
  return [...consoles, `root=PARTUUID=${rootPartUuid}`, 'ro', 'rootwait', 'fsck.repair=yes', 'loglevel=4', 'systemd.show_status=error'].join(' ')
}

/**
 * config.txt, written by the build (raspi-firmware's hook would write its own at every kernel update; the root is
 * read-only and its hook is not run on the box). The kernel and initrd are copied under fixed names so an update
 * replaces them without editing this file.
 */
export function piConfigTxt(): string {
  return [
    '# PBX presence gateway (Raspberry Pi 4/5). Written by the image build (firmware/image/layout.ts).',
    '# 64-bit kernel; Debian\'s upstream kernel with its own device trees (bcm2711-rpi-4-b.dtb, bcm2712-rpi-5-b.dtb).',
    'arm_64bit=1',
    'upstream_kernel=1',
    'kernel=vmlinuz',
    'initramfs initrd.img followkernel',
    'cmdline=cmdline.txt',
    '# The serial console on GPIO 14/15; on a Pi 4 this also fixes the core clock the mini UART\'s baud rate follows.',
    'enable_uart=1',
    'disable_splash=1',
    '',
  ].join('\n')
}

/** The Pi's /etc/fstab: MBR has no partition names, so /var and the boot partition are found by file system label. */
export function piFstab(): string {
  return [
    '# The PBX presence gateway appliance (Raspberry Pi). The root file system is not listed: cmdline.txt names it',
    '# (root=PARTUUID=...) and mounts it read-only ("ro").',
    '# /var is the data partition: the gateway\'s state (/var/lib/pbx-gateway), the journal and what systemd keeps.',
    'LABEL=data      /var            ext4   defaults,noatime,x-systemd.growfs  0 2',
    `LABEL=${PI_BOOT_LABEL}    /boot/firmware  vfat   umask=0077,noauto,x-systemd.automount,x-systemd.idle-timeout=60  0 2`,
    'tmpfs           /tmp            tmpfs  mode=1777,nosuid,nodev,size=128M  0 0',
    '',
  ].join('\n')
}

/** The image file under dist/images/ for the Pi target (.img.xz for Raspberry Pi Imager or xz -dc | dd). */
export const PI_IMAGE_BASENAME = 'pbx-gateway-pi-arm64'
