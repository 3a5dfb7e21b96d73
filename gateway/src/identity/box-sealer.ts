/**
 * The box's secrets at rest (its identity key; PBX credentials later) are sealed with AES-256-GCM under a key file
 * readable only by the service (DESIGN §4). Sealed form: `v1.<iv>.<tag>.<ciphertext>` (base64url); `purpose` is
 * bound as additional data, so one sealed value cannot be swapped in for another.
 *
 * The relay has its own sealer in cloud-relay; the two services share only the protocol folder.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

const KEY_BYTES = 32
const IV_BYTES = 12

export class BoxSealError extends Error {
  readonly code = 'BOX_SEAL_MISMATCH'
  constructor(message: string) {
    super(message)
    this.name = 'BoxSealError'
  }
}

export class BoxSealer {
  readonly #key: Buffer

  constructor(key: Buffer, readonly source: string) {
    if (key.length !== KEY_BYTES) throw new BoxSealError(`the seal key ${source} must hold ${KEY_BYTES} bytes, it holds ${key.length}: it is damaged. Run "factory-reset --yes" and enroll the box again.`)
    this.#key = Buffer.from(key)
  }

  /** Reads the key file, creating it (mode 0600) on first boot. */
  static async open(keyFile: string): Promise<BoxSealer> {
    let text: string | undefined
    try {
      text = await readFile(keyFile, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new BoxSealError(`cannot read the seal key ${keyFile}: ${(err as Error).message}. It must be readable by the gateway service's user (chmod 600, owned by that user).`)
      }
    }
    if (text === undefined) {
      await mkdir(dirname(keyFile), { recursive: true, mode: 0o700 })
      const key = randomBytes(KEY_BYTES)
      // 'wx': never overwrite a key another process created meanwhile.
      await writeFile(keyFile, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' })
      await chmod(keyFile, 0o600)
      return new BoxSealer(key, keyFile)
    }
    return new BoxSealer(Buffer.from(text.trim(), 'base64'), keyFile)
  }

  seal(plaintext: string | Buffer, purpose: string): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv)
    cipher.setAAD(Buffer.from(purpose, 'utf8'))
    const data = Buffer.concat([cipher.update(typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext), cipher.final()])
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join('.')
  }

  open(sealed: string, purpose: string): Buffer {
    const [version, iv, tag, data] = sealed.trim().split('.')
    if (version !== 'v1' || iv === undefined || tag === undefined || data === undefined) {
      throw new BoxSealError(`the sealed ${purpose} is not in the v1 format: it is damaged. Run "factory-reset --yes" and enroll the box again.`)
    }
    try {
      const nonce = Buffer.from(iv, 'base64url')
      if (nonce.length !== IV_BYTES) throw new Error('nonce length')
      // Node accepts GCM tags of 4 to 16 bytes unless told the length: a short tag is forged in 2^32 tries.
      const decipher = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: 16 })
      decipher.setAAD(Buffer.from(purpose, 'utf8'))
      decipher.setAuthTag(Buffer.from(tag, 'base64url'))
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()])
    } catch {
      throw new BoxSealError(
        `cannot open the sealed ${purpose} with the seal key ${this.source}: the key file was replaced or the sealed file is damaged. ` +
          'Restore the original key file, or run "factory-reset --yes" and enroll the box again with a new code.',
      )
    }
  }
}
