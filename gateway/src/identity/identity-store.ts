import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { homedir } from 'node:os'
import { mkdir, readdir, readFile, rename, rm, unlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { writeFileAtomic, syncDirectory } from './atomic-file.js'
import { BoxSealer } from './box-sealer.js'

/**
 * The box's identity on disk, in `<dataDir>/identity/`:
 *   seal.key          AES-256 key (0600), made at first boot
 *   key.sealed        the P-256 private key (PKCS#8), sealed under seal.key, made at first boot
 *   cert.pem          the client certificate the relay issued (CN = gateway id)
 *   ca.pem            the relay's CA chain: what the box trusts for the broker and for renewals
 *   enrollment.json   { gatewayId, tenantId, brokerUrls, enrolledAt, notAfter, renewAfter, relayUrl }
 *
 * Every file is written atomically. An enrollment or renewal writes the three files as `*.new` first (each
 * fsynced, enrollment.json.new last) and then renames them: a power cut before enrollment.json.new exists
 * leaves the old identity; after it, the next load completes the renames. The certificate itself is the
 * authority for the gateway id and the validity dates.
 */

const KEY_PURPOSE = 'box-identity-key'
const FILES = ['cert.pem', 'ca.pem', 'enrollment.json'] as const

export interface EnrollmentRecord {
  gatewayId: string
  tenantId: string
  brokerUrls: string[]
  enrolledAt: string
  notAfter: string
  renewAfter: string
  relayUrl: string
}

export interface BoxIdentity extends EnrollmentRecord {
  certPem: string
  caPem: string
  keyPem: string
}

/** What the MQTT uplink needs to connect with mutual TLS. */
export interface UplinkIdentity {
  gatewayId: string
  tenantId: string
  brokerUrls: string[]
  tls: { keyPem: string; certPem: string; caPem: string }
}

/** What the relay answered to an enrollment or a renewal. */
export interface IssuedIdentity {
  gatewayId: string
  tenantId: string
  certificatePem: string
  caChainPem: string
  brokerUrls: string[]
  notAfter: string
  renewAfter: string
  serverTime: string
}

export class IdentityError extends Error {
  constructor(readonly code: 'BOX_IDENTITY_DAMAGED' | 'BOX_FACTORY_RESET_REFUSED', message: string) {
    super(message)
    this.name = 'IdentityError'
  }
}

export class IdentityStore {
  readonly dir: string

  constructor(readonly dataDir: string) {
    this.dir = join(dataDir, 'identity')
  }

  /** The box's private key (PKCS#8 PEM), made at first boot and kept sealed. */
  async ensureKey(): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const sealer = await BoxSealer.open(join(this.dir, 'seal.key'))
    const file = join(this.dir, 'key.sealed')
    let sealed: string | undefined
    try {
      sealed = await readFile(file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    if (sealed !== undefined) return sealer.open(sealed, KEY_PURPOSE).toString('utf8')
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    await writeFileAtomic(file, `${sealer.seal(keyPem, KEY_PURPOSE)}\n`)
    return keyPem
  }

  /** The enrolled identity, or undefined when the box has not enrolled (or was factory reset). */
  async load(): Promise<BoxIdentity | undefined> {
    await this.#completeInterruptedSave()
    let recordText: string
    try {
      recordText = await readFile(join(this.dir, 'enrollment.json'), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    const damaged = (what: string) => new IdentityError('BOX_IDENTITY_DAMAGED', `the box's identity in ${this.dir} is damaged (${what}): run "factory-reset --yes" and enroll the box again with a new code from the console.`)
    let record: EnrollmentRecord
    try {
      record = parseRecord(JSON.parse(recordText))
    } catch (err) {
      throw damaged(`enrollment.json: ${(err as Error).message}`)
    }
    let certPem: string
    let caPem: string
    try {
      certPem = await readFile(join(this.dir, 'cert.pem'), 'utf8')
      caPem = await readFile(join(this.dir, 'ca.pem'), 'utf8')
    } catch (err) {
      throw damaged((err as Error).message)
    }
    let cert: X509Certificate
    try {
      cert = new X509Certificate(certPem)
    } catch (err) {
      throw damaged(`cert.pem: ${(err as Error).message}`)
    }
    const keyPem = await this.ensureKey()
    if (!cert.checkPrivateKey(createPrivateKey(keyPem))) throw damaged('the certificate is not for this box\'s key')
    const validity = validityOf(cert)
    return { ...record, gatewayId: commonNameOf(cert.subject) || record.gatewayId, notAfter: validity.notAfter, renewAfter: validity.renewAfter, certPem, caPem, keyPem }
  }

  /** Stores what the relay issued (enrollment or renewal); returns the identity as load() will read it. */
  async save(issued: IssuedIdentity, relayUrl: string, enrolledAt: string): Promise<BoxIdentity> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const record: EnrollmentRecord = {
      gatewayId: issued.gatewayId,
      tenantId: issued.tenantId,
      brokerUrls: issued.brokerUrls,
      enrolledAt,
      notAfter: issued.notAfter,
      renewAfter: issued.renewAfter,
      relayUrl,
    }
    const content: Record<(typeof FILES)[number], string> = {
      'cert.pem': ensureNewline(issued.certificatePem),
      'ca.pem': ensureNewline(issued.caChainPem),
      'enrollment.json': `${JSON.stringify(record, null, 2)}\n`,
    }
    // enrollment.json.new last: its presence says every .new file is complete.
    for (const name of FILES) await writeFileAtomic(join(this.dir, `${name}.new`), content[name], 0o600)
    await this.#completeInterruptedSave()
    const identity = await this.load()
    if (!identity) throw new IdentityError('BOX_IDENTITY_DAMAGED', `the identity just written to ${this.dir} cannot be read back: check the disk (df -h, dmesg).`)
    return identity
  }

  async #completeInterruptedSave(): Promise<void> {
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    if (names.includes('enrollment.json.new')) {
      for (const name of FILES) if (names.includes(`${name}.new`)) await rename(join(this.dir, `${name}.new`), join(this.dir, name))
      await syncDirectory(this.dir)
      return
    }
    // A save cut short before it was complete: the old identity stands.
    for (const name of FILES) if (names.includes(`${name}.new`)) await unlink(join(this.dir, `${name}.new`)).catch(() => undefined)
  }
}

/** The identity in the shape the MQTT uplink takes, or undefined when the box has not enrolled. */
export async function loadUplinkIdentity(dataDir: string): Promise<UplinkIdentity | undefined> {
  const identity = await new IdentityStore(dataDir).load()
  return identity ? toUplinkIdentity(identity) : undefined
}

export function toUplinkIdentity(identity: BoxIdentity): UplinkIdentity {
  return { gatewayId: identity.gatewayId, tenantId: identity.tenantId, brokerUrls: [...identity.brokerUrls], tls: { keyPem: identity.keyPem, certPem: identity.certPem, caPem: identity.caPem } }
}

/**
 * Factory reset: removes everything under dataDir (identity, config overrides, outbox, state files), leaving a box
 * that enrolls from scratch. Refuses folders that cannot be a gateway's data folder (/, the home folder, the
 * current folder). Returns the names removed.
 */
/** What the gateway keeps in its data folder (and the temporary names its atomic writes use next to them). */
const GATEWAY_ENTRIES = ['identity', 'web', 'connectors.json', 'outbox', 'state.json', 'network', 'ssh', 'update', 'lost+found']
function isGatewayEntry(name: string): boolean {
  return GATEWAY_ENTRIES.some((entry) => name === entry || name.startsWith(`${entry}.`))
}

export async function factoryReset(dataDir: string): Promise<{ dataDir: string; removed: string[] }> {
  const target = resolve(dataDir)
  const refuse = (): never => {
    throw new IdentityError('BOX_FACTORY_RESET_REFUSED', `refusing to wipe ${target}: it is not a gateway data folder. Set dataDir to the gateway's own folder (e.g. /var/lib/pbx-gateway).`)
  }
  if (target === resolve('/')) refuse()
  let names: string[]
  try {
    names = await readdir(target)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { dataDir: target, removed: [] }
    throw err
  }
  // A home or working folder is wiped only when it holds nothing but the gateway's own files: a service user's
  // home often is its data folder (the appliance's pbxgw, the container's /data), a person's home never is.
  if ((target === resolve(homedir()) || target === resolve(process.cwd())) && !names.every(isGatewayEntry)) refuse()
  // The identity first: a reset cut short must never leave a box that still connects as the old gateway.
  const ordered = [...names.filter((n) => n === 'identity'), ...names.filter((n) => n !== 'identity')]
  for (const name of ordered) await rm(join(target, name), { recursive: true, force: true })
  await syncDirectory(target)
  return { dataDir: target, removed: ordered }
}

export function validityOf(cert: X509Certificate): { notBefore: string; notAfter: string; renewAfter: string } {
  const notBefore = Date.parse(cert.validFrom)
  const notAfter = Date.parse(cert.validTo)
  return {
    notBefore: new Date(notBefore).toISOString(),
    notAfter: new Date(notAfter).toISOString(),
    renewAfter: new Date(notBefore + Math.round(((notAfter - notBefore) * 2) / 3)).toISOString(),
  }
}

function commonNameOf(subject: string): string {
  for (const line of subject.split('\n')) if (line.startsWith('CN=')) return line.slice(3)
  return ''
}

function ensureNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`
}

function parseRecord(value: unknown): EnrollmentRecord {
  if (typeof value !== 'object' || value === null) throw new Error('not an object')
  const v = value as Record<string, unknown>
  const str = (name: string): string => {
    const x = v[name]
    if (typeof x !== 'string') throw new Error(`${name} is missing`)
    return x
  }
  const urls = v.brokerUrls
  if (!Array.isArray(urls) || !urls.every((u): u is string => typeof u === 'string')) throw new Error('brokerUrls is not a list of URLs')
  return { gatewayId: str('gatewayId'), tenantId: str('tenantId'), brokerUrls: urls, enrolledAt: str('enrolledAt'), notAfter: str('notAfter'), renewAfter: str('renewAfter'), relayUrl: str('relayUrl') }
}
