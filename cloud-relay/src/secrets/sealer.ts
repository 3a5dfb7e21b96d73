/**
 * Secrets at rest (msal token caches holding refresh tokens, the notification certificate's private key,
 * subscription clientStates) are sealed with AES-256-GCM under one relay key (DESIGN §4).
 *
 * Sealed form: `v1.<iv>.<tag>.<ciphertext>` (base64url). `purpose` is bound as additional data, so a sealed
 * token cache cannot be swapped in where a private key is expected.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

const KEY_BYTES = 32
const IV_BYTES = 12
/** Node accepts GCM tags of 4 to 16 bytes unless told the length: a 4-byte tag would be forged in 2^32 tries. */
const TAG_BYTES = 16

export class SealError extends Error {
  readonly code = 'SEAL_MISMATCH'
  constructor(message: string) {
    super(message)
    this.name = 'SealError'
  }
}

export class Sealer {
  readonly #key: Buffer
  /** Where the key came from, for error messages (never the key itself). */
  readonly source: string

  constructor(key: Buffer, source: string) {
    if (key.length !== KEY_BYTES) throw new Error(`the seal key from ${source} must be ${KEY_BYTES} bytes, got ${key.length}`)
    this.#key = Buffer.from(key)
    this.source = source
  }

  seal(plaintext: string | Buffer, purpose: string): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv)
    cipher.setAAD(Buffer.from(purpose, 'utf8'))
    const data = Buffer.concat([cipher.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), cipher.final()])
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join('.')
  }

  open(sealed: string, purpose: string): Buffer {
    const [version, iv, tag, data] = sealed.split('.')
    if (version !== 'v1' || iv === undefined || tag === undefined || data === undefined) {
      throw new SealError(`a sealed ${purpose} in the store is not in the v1 format: the store was written by a newer relay or is damaged`)
    }
    try {
      const nonce = Buffer.from(iv, 'base64url')
      if (nonce.length !== IV_BYTES) throw new Error('nonce length')
      const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES })
      decipher.setAAD(Buffer.from(purpose, 'utf8'))
      decipher.setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()])
    } catch {
      throw new SealError(
        `cannot open a sealed ${purpose}: the seal key (${this.source}) is not the key it was sealed with. ` +
          'Restore the original key (RELAY_SEAL_KEY or the key file), or, if it is lost, remove the service accounts ' +
          '(DELETE /api/v1/tenants/{tenant}/service-accounts/{id}) and sign them in again',
      )
    }
  }

  openText(sealed: string, purpose: string): string {
    return this.open(sealed, purpose).toString('utf8')
  }
}

/** A 32-byte key as base64 (44 chars) or hex (64 chars). */
export function parseSealKey(text: string, source: string): Buffer {
  const trimmed = text.trim()
  const key = /^[0-9a-fA-F]{64}$/.test(trimmed) ? Buffer.from(trimmed, 'hex') : Buffer.from(trimmed, 'base64')
  if (key.length !== KEY_BYTES) {
    throw new Error(`the seal key in ${source} is not 32 bytes: give 64 hex characters or 44 base64 characters (e.g. from "openssl rand -base64 32")`)
  }
  return key
}

/**
 * The relay's seal key: RELAY_SEAL_KEY when set, else the key file, which is created with mode 0600 on first
 * start. Losing the key means signing the service accounts in again; nothing else depends on it.
 */
export async function loadSealer(options: { envKey?: string | undefined; keyFile: string }): Promise<Sealer> {
  if (options.envKey !== undefined && options.envKey.trim() !== '') {
    return new Sealer(parseSealKey(options.envKey, 'RELAY_SEAL_KEY'), 'RELAY_SEAL_KEY')
  }
  let text: string | undefined
  try {
    text = await readFile(options.keyFile, 'utf8')
    const mode = (await stat(options.keyFile)).mode & 0o777
    // The key opens every sealed token cache and the relay CA's key: nobody but the relay may read it.
    if ((mode & 0o077) !== 0 && process.platform !== 'win32') {
      throw new Error(`the seal key file ${options.keyFile} can be read by other users (mode ${mode.toString(8)}): run "chmod 600 ${options.keyFile}" and start the relay again`)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (text !== undefined) throw err
      throw new Error(`cannot read the seal key file ${options.keyFile}: ${(err as Error).message}. Make it readable by the relay's user only (chmod 600).`)
    }
  }
  if (text === undefined) {
    await mkdir(dirname(options.keyFile), { recursive: true, mode: 0o700 })
    const key = randomBytes(KEY_BYTES)
    // 'wx': never overwrite a key another process created meanwhile.
    await writeFile(options.keyFile, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' })
    await chmod(options.keyFile, 0o600)
    return new Sealer(key, `key file ${options.keyFile}`)
  }
  return new Sealer(parseSealKey(text, `key file ${options.keyFile}`), `key file ${options.keyFile}`)
}
