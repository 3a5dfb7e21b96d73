/**
 * What goes into the box's root, apart from the files under rootfs/ and ../systemd/: Debian packages, initrd
 * drivers, which units run, which npm packages the bundle needs. Pure data and functions, shared by the build and
 * the recipe test (test/firmware/image-recipe.test.ts).
 */
import { builtinModules } from 'node:module'

/** The box's Debian packages: systemd, the network, mDNS, the kernel and boot loader; no compilers, no X. */
export const BASE_PACKAGES = [
  'systemd-sysv', 'udev', 'dbus', 'libpam-systemd', 'systemd-resolved', 'systemd-timesyncd', 'systemd-repart',
  'systemd-boot', 'systemd-boot-efi', 'linux-image-amd64', 'initramfs-tools',
  'avahi-daemon', 'libnss-mdns', 'iproute2', 'ca-certificates', 'e2fsprogs',
  // Installed but disabled: the setup page turns it on with the installer's key (host keys are made on the box).
  'openssh-server',
  // A/B updates: RAUC checks a bundle's signature against /etc/rauc/keyring.pem and writes the other root slot; its
  // D-Bus service (rauc-service) does the install as root for the unprivileged gateway.
  'rauc', 'rauc-service', 'squashfs-tools',
] as const

/** Documentation, manuals and translations stay out of the root (about 60 MB). */
export const DPKG_EXCLUDES = [
  'path-exclude=/usr/share/man/*', 'path-exclude=/usr/share/doc/*', 'path-include=/usr/share/doc/*/copyright',
  'path-exclude=/usr/share/locale/*', 'path-exclude=/usr/share/info/*', 'path-exclude=/usr/share/lintian/*',
]

/**
 * The initrd only needs to find the root partition: storage drivers of the usual hypervisors plus ext4. Debian's
 * default (MODULES=most) made a 36 MB initrd that took tens of seconds to unpack under QEMU's TCG.
 */
export const INITRD_MODULES = ['ext4', 'virtio_blk', 'virtio_scsi', 'nvme', 'ahci', 'ata_piix', 'sd_mod', 'vmw_pvscsi', 'mptspi', 'mptsas', 'hv_vmbus', 'hv_storvsc', 'xen_blkfront']

/** Units the box starts, and what it must not run (updates come as whole images; SSH only when enabled). */
export const ENABLE_UNITS = [
  'systemd-networkd.service', 'systemd-resolved.service', 'systemd-timesyncd.service', 'avahi-daemon.service', 'systemd-repart.service',
  'pbxgw-hostname.service', 'pbx-gateway.service',
  // The setup page's network and SSH settings (applied at boot and when the gateway asks), the console screen's redraw.
  'pbxgw-network-apply.service', 'pbxgw-network-apply.path', 'pbxgw-ssh-apply.service', 'pbxgw-ssh-apply.path', 'pbxgw-console-reload.path',
  // A new slot on trial (a counted boot entry) becomes healthy or the box reboots; inert on a known-good slot.
  'pbxgw-trial-check.service',
  // The gateway cannot reboot the box itself (no privileges): it asks through a file, as for network and SSH.
  'pbxgw-update-reboot.path',
]
export const DISABLE_UNITS = ['ssh.service', 'ssh.socket']
// systemd-boot-random-seed writes a seed to the ESP at every boot and holds up sysinit.target while it mounts the
// FAT partition (15 s of a TCG boot); the kernel's own RNG is enough, and the ESP stays untouched except by updates.
// systemd-bless-boot would mark a new slot good as soon as boot-complete.target is reached, before the gateway is
// healthy; the update agent marks it good through RAUC (rauc status mark-good, boot-slot set-state) instead.
export const MASK_UNITS = ['apt-daily.timer', 'apt-daily-upgrade.timer', 'apt-daily.service', 'apt-daily-upgrade.service', 'e2scrub_all.timer', 'e2scrub_reap.service', 'dpkg-db-backup.timer', 'systemd-boot-random-seed.service', 'systemd-bless-boot.service']

/** npm packages the bundle loads at run time: dependencies named in it as a module specifier or string (pino's transport targets). */
export function runtimePackages(bundle: string, dependencies: readonly string[]): string[] {
  return dependencies.filter((name) => !builtinModules.includes(name) && new RegExp(`["']${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(/[^"']*)?["']`).test(bundle)).sort()
}


/**
 * The Raspberry Pi 4/5 image: the same box on arm64. Debian's arm64 kernel (its device trees include the Pi 4's
 * bcm2711 and the Pi 5's bcm2712) and raspi-firmware (non-free-firmware: the Pi's GPU firmware, start4.elf and
 * fixup4.dat, that loads the kernel; a Pi 5 boots from its EEPROM and needs only the dtbs). No systemd-boot: the
 * Pi firmware reads config.txt.
 */
export const PI_PACKAGES = [
  // No RAUC yet: the Pi's A/B switch (the firmware's tryboot) is not wired (firmware/README.md, Updates).
  ...BASE_PACKAGES.filter((p) => p !== 'systemd-boot' && p !== 'systemd-boot-efi' && p !== 'linux-image-amd64' && p !== 'rauc' && p !== 'rauc-service' && p !== 'squashfs-tools'),
  'linux-image-arm64', 'raspi-firmware',
] as const

/**
 * The Pi initrd: the SD card (Pi 4: sdhci-iproc on emmc2, its 1.8 V switch through the firmware's GPIO expander;
 * the older SD host bcm2835), USB disks (Pi 4: the VL805 xHCI behind PCIe, loaded by the firmware through
 * reset-raspberrypi; dwc2 on the USB-C port), and virtio for the boot test under qemu-system-aarch64. Checked
 * against trixie's arm64 kernel by npm run image:check-pi (each one in the initrd or built in). Not here: the Pi 5's
 * SD host (sdhci-brcmstb) and its RP1 chip (Ethernet, USB), which trixie's 6.12 kernel does not have.
 */
export const PI_INITRD_MODULES = [
  'ext4', 'mmc_block', 'sdhci_iproc', 'bcm2835', 'gpio_raspberrypi_exp', 'clk_raspberrypi',
  'usb_storage', 'uas', 'sd_mod', 'xhci_pci', 'xhci_plat_hcd', 'pcie_brcmstb', 'reset_raspberrypi', 'dwc2',
  'virtio_blk', 'virtio_pci', 'virtio_mmio',
]

/** systemd-repart grows only GPT partitions; on the Pi's MBR it would fail at every boot. */
export const PI_MASK_UNITS = [...MASK_UNITS.filter((u) => u !== 'systemd-boot-random-seed.service'), 'systemd-repart.service']
