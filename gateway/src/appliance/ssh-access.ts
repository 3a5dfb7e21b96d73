import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Type, type Static } from '@sinclair/typebox'
import type { Logger } from 'pino'
import { writeFileAtomic } from '../identity/atomic-file.js'

/**
 * SSH to the box, off until an admin turns it on from the setup page with at least one public key. The keys go to
 * `<dataDir>/ssh/authorized_keys`; the root-owned pbxgw-ssh-apply unit checks them again, installs them where sshd
 * reads them and starts or stops ssh.service. Keys only: no password exists to log in with.
 */

export const MAX_SSH_KEYS = 16
export const MIN_RSA_BITS = 3072

export const SshSettingsSchema = Type.Object({
  enabled: Type.Boolean({ description: 'SSH on (needs at least one key) or off (the default).' }),
  keys: Type.Array(Type.String({ maxLength: 16_384 }), { maxItems: 64, description: `Public keys, one line each: ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa (at least ${MIN_RSA_BITS} bits), with an optional comment; no options. At most ${MAX_SSH_KEYS}.` }),
}, { additionalProperties: false })
export type SshSettings = Static<typeof SshSettingsSchema>

const ALLOWED_TYPES = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ssh-rsa'] as const

/** Reads the SSH wire format's length-prefixed fields; never throws, undefined when a field runs past the end. */
function wireFields(blob: Buffer): Buffer[] | undefined {
  const fields: Buffer[] = []
  let offset = 0
  while (offset < blob.length) {
    if (offset + 4 > blob.length) return undefined
    const length = blob.readUInt32BE(offset)
    offset += 4
    if (length > blob.length - offset) return undefined
    fields.push(blob.subarray(offset, offset + length))
    offset += length
  }
  return fields
}

/** Bits of an SSH mpint (big-endian, possibly with a leading zero byte). */
function mpintBits(value: Buffer): number {
  let i = 0
  while (i < value.length && value[i] === 0) i++
  if (i === value.length) return 0
  return (value.length - i - 1) * 8 + (32 - Math.clz32(value[i] ?? 0))
}

/**
 * One authorized_keys line checked strictly: the key type first (so no `command=`, `from=` or other options),
 * a base64 key blob whose own type, sizes and curve match, and an optional plain comment. Returns the line as it
 * will be stored (single spaces), or the problem in words.
 */
export function checkPublicKey(line: string): { key: string } | { problem: string } {
  const trimmed = line.trim()
  if (/[\r\n\u0000]/.test(trimmed)) return { problem: 'put one key per entry (no line breaks inside a key)' }
  const parts = trimmed.split(/[ \t]+/)
  const [type, data, ...commentParts] = parts
  if (!type || !data) return { problem: 'a key line is "TYPE BASE64 [comment]", e.g. ssh-ed25519 AAAAC3Nz… admin@laptop: copy the whole line of your .pub file' }
  if (!(ALLOWED_TYPES as readonly string[]).includes(type)) {
    if (/[=,"]/.test(type) || !type.includes('-')) return { problem: 'options in front of the key (command=, from=, no-pty, …) are not accepted: paste only the key line from your .pub file' }
    return { problem: `key type "${type.slice(0, 40)}" is not accepted: use ssh-ed25519 (ssh-keygen -t ed25519), ecdsa-sha2-nistp256 or ssh-rsa with at least ${MIN_RSA_BITS} bits` }
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(data) || data.length % 4 !== 0) return { problem: 'the key\'s base64 part is damaged: copy the line again from your .pub file' }
  const fields = wireFields(Buffer.from(data, 'base64'))
  if (!fields || fields[0]?.toString('latin1') !== type) return { problem: `the key data does not hold a ${type} key: copy the line again from your .pub file` }
  if (type === 'ssh-ed25519' && !(fields.length === 2 && fields[1]?.length === 32)) return { problem: 'the ssh-ed25519 key has the wrong size: copy the line again from your .pub file' }
  if (type === 'ecdsa-sha2-nistp256' && !(fields.length === 3 && fields[1]?.toString('latin1') === 'nistp256' && fields[2]?.length === 65 && fields[2][0] === 4)) return { problem: 'the ecdsa-sha2-nistp256 key is not a P-256 key: copy the line again from your .pub file' }
  if (type === 'ssh-rsa') {
    if (fields.length !== 3) return { problem: 'the ssh-rsa key is damaged: copy the line again from your .pub file' }
    const bits = mpintBits(fields[2] ?? Buffer.alloc(0))
    if (bits < MIN_RSA_BITS) return { problem: `the RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are needed: make a new one with ssh-keygen -t ed25519 (or -t rsa -b 4096)` }
  }
  const comment = commentParts.join(' ')
  if (comment.length > 200 || !/^[A-Za-z0-9@._+:-]*( [A-Za-z0-9@._+:-]+)*$/.test(comment)) return { problem: 'the comment after the key may hold letters, digits and @ . _ + : - only (at most 200 characters)' }
  return { key: [type, data, ...(comment ? [comment] : [])].join(' ') }
}

/** Every problem of the submitted settings; the keys as stored when there is none. */
export function checkSshSettings(s: SshSettings): { keys: string[]; problems: string[] } {
  const problems: string[] = []
  const keys: string[] = []
  const lines = s.keys.filter((k) => k.trim() !== '')
  if (lines.length > MAX_SSH_KEYS) problems.push(`keys: at most ${MAX_SSH_KEYS} keys (${lines.length} given)`)
  lines.forEach((line, i) => {
    const result = checkPublicKey(line)
    if ('problem' in result) problems.push(`keys[${i}]: ${result.problem}`)
    else if (keys.some((k) => k.split(' ')[1] === result.key.split(' ')[1])) problems.push(`keys[${i}]: this key is listed twice`)
    else keys.push(result.key)
  })
  if (s.enabled && lines.length === 0) problems.push('keys: SSH can only be turned on with at least one public key (there is no password login)')
  return { keys, problems }
}

/** `<dataDir>/ssh/`: authorized_keys, settings.json and the apply request that root's path unit watches. */
export class SshAccessStore {
  readonly #dir: string
  readonly #log: Logger

  constructor(dataDir: string, logger: Logger) {
    this.#dir = join(dataDir, 'ssh')
    this.#log = logger.child({ component: 'ssh' })
  }

  async get(): Promise<SshSettings> {
    try {
      const parsed = JSON.parse(await readFile(join(this.#dir, 'settings.json'), 'utf8')) as { enabled?: unknown }
      const keys = (await readFile(join(this.#dir, 'authorized_keys'), 'utf8').catch(() => '')).split('\n').filter(Boolean)
      return { enabled: parsed.enabled === true && keys.length > 0, keys }
    } catch {
      return { enabled: false, keys: [] }
    }
  }

  /** Stores checked keys and the on/off flag, then asks root to apply them (the request is written last). */
  async put(enabled: boolean, keys: readonly string[]): Promise<SshSettings> {
    await mkdir(this.#dir, { recursive: true, mode: 0o755 })
    await writeFileAtomic(join(this.#dir, 'authorized_keys'), keys.map((k) => `${k}\n`).join(''), 0o644)
    await writeFileAtomic(join(this.#dir, 'settings.json'), `${JSON.stringify({ enabled })}\n`, 0o644)
    await writeFileAtomic(join(this.#dir, 'apply-request'), `${enabled ? 'enabled' : 'disabled'}\n`, 0o644)
    this.#log.warn({ enabled, keys: keys.length }, enabled ? 'SSH turned on from the setup page' : 'SSH turned off from the setup page')
    return { enabled, keys: [...keys] }
  }
}
