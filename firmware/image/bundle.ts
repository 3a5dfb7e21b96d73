/**
 * Update bundles and the keys that sign them. A bundle is RAUC's (verity format): the root file system as an ext4
 * image, a manifest naming the image's compatible string and the version, signed with the release signing key. A
 * box accepts it only if the signature chains to the release CA in its image (/etc/rauc/keyring.pem).
 *
 * The keys live with the release process (--release-keys DIR), never in an image: the image gets the CA certificate
 * only. Without keys in DIR the build makes development keys there and says so; production releases pass their own.
 */
import { existsSync } from 'node:fs'
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run, StepFailure } from './steps.js'

/** The compatible string of system.conf: a bundle for another kind of box is refused by RAUC before anything is written. */
export const VM_COMPATIBLE = 'pbx-gateway-vm-x86_64'

export interface ReleaseKeys {
  dir: string
  /** The release CA: goes into the image as RAUC's keyring. */
  caCert: string
  signingCert: string
  signingKey: string
  /** True when this build made them (development keys). */
  made: boolean
}

const FILES = { caCert: 'ca.cert.pem', caKey: 'ca.key.pem', signingCert: 'signing.cert.pem', signingKey: 'signing.key.pem' } as const

/** The keys in DIR, made as development keys (ECDSA P-256, CA plus a code-signing certificate) when DIR has none. */
export async function releaseKeys(dir: string, label = 'development'): Promise<ReleaseKeys> {
  const path = (name: keyof typeof FILES) => join(dir, FILES[name])
  const keys = { dir, caCert: path('caCert'), signingCert: path('signingCert'), signingKey: path('signingKey') }
  const present = [keys.caCert, keys.signingCert, keys.signingKey].filter((f) => existsSync(f))
  if (present.length === 3) return { ...keys, made: false }
  if (present.length > 0) {
    throw new StepFailure(`${dir} holds only part of a release key set (${present.map((f) => f.slice(dir.length + 1)).join(', ')}); it needs ${FILES.caCert}, ${FILES.signingCert} and ${FILES.signingKey}`)
  }
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await run('openssl', ['req', '-x509', ...ec, '-keyout', path('caKey'), '-out', keys.caCert, '-days', '3650',
    '-subj', `/O=PBX presence gateway/CN=release CA (${label})`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  const csr = join(dir, 'signing.csr')
  await run('openssl', ['req', ...ec, '-keyout', keys.signingKey, '-out', csr, '-subj', `/O=PBX presence gateway/CN=release signing (${label})`])
  const ext = join(dir, 'signing.ext')
  // No extended key usage: RAUC checks the chain with OpenSSL's S/MIME signing purpose, which a codeSigning-only certificate fails.
  await writeFile(ext, 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n')
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', keys.caCert, '-CAkey', path('caKey'), '-CAcreateserial', '-out', keys.signingCert, '-days', '1825', '-extfile', ext])
  await rm(csr)
  await rm(ext)
  for (const name of ['caKey', 'signingKey'] as const) await chmod(path(name), 0o600)
  return { ...keys, made: true }
}

/** The manifest RAUC reads from a bundle: one ext4 image for the root slot class. */
export function bundleManifest(options: { compatible: string; version: string; build: string }): string {
  return [
    '[update]',
    `compatible=${options.compatible}`,
    `version=${options.version}`,
    `description=PBX presence gateway ${options.version}`,
    `build=${options.build}`,
    '',
    '[bundle]',
    'format=verity',
    '',
    '[image.rootfs]',
    'filename=rootfs.ext4',
    '',
  ].join('\n')
}

/** Size of the bundle's root image: what the root holds plus room for ext4's own structures, in whole MiB. */
export function rootImageMiB(rootBytes: number): number {
  return Math.ceil((rootBytes * 1.15) / 1024 / 1024) + 64
}

export interface BundleResult {
  file: string
  rootImageBytes: number
}

/**
 * Writes <out>/<basename>-<version>.raucb from the assembled root (the tree the disk's root-a is made from) with
 * mkfs.ext4 -d (no mounts) and rauc bundle.
 */
export async function buildBundle(options: { rootfsDir: string; rootBytes: number; version: string; compatible: string; keys: ReleaseKeys; out: string; basename: string; work: string }): Promise<BundleResult> {
  const content = join(options.work, 'bundle')
  await rm(content, { recursive: true, force: true })
  await mkdir(content, { recursive: true })
  const image = join(content, 'rootfs.ext4')
  const sizeMiB = rootImageMiB(options.rootBytes)
  await run('mkfs.ext4', ['-F', '-q', '-L', 'root', '-d', options.rootfsDir, image, `${sizeMiB}M`])
  await writeFile(join(content, 'manifest.raucm'), bundleManifest({ compatible: options.compatible, version: options.version, build: new Date().toISOString() }))
  const file = join(options.out, `${options.basename}-${options.version}.raucb`)
  await rm(file, { force: true })
  await run('rauc', ['bundle', `--cert=${options.keys.signingCert}`, `--key=${options.keys.signingKey}`, `--keyring=${options.keys.caCert}`, content, file])
  await rm(content, { recursive: true, force: true })
  return { file, rootImageBytes: sizeMiB * 1024 * 1024 }
}
