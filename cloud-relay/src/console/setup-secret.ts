import { randomBytes } from 'node:crypto'
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * The one-time secret that creates the first console operator: without it, whoever reached a fresh relay first
 * became operator of every tenant. It is made at start while no account exists, printed in the relay's log and
 * written to a file only the relay's user can read; it ends with the first account.
 */
export class SetupSecret {
  #secret: string | undefined

  constructor(readonly file: string) {}

  get value(): string | undefined {
    return this.#secret
  }

  /** A new secret (the previous start's stops working), written with mode 0600. */
  async create(): Promise<string> {
    // 20 random bytes, in 4-character groups so a person can copy it from a log without losing their place.
    const secret = (randomBytes(20).toString('base64url').match(/.{1,4}/g) ?? []).join('-')
    await mkdir(dirname(this.file), { recursive: true })
    await rm(this.file, { force: true })
    await writeFile(this.file, `${secret}\n`, { mode: 0o600 })
    await chmod(this.file, 0o600) // whatever the umask
    this.#secret = secret
    return secret
  }

  /** The first account exists: the secret and its file are gone. */
  async remove(): Promise<void> {
    this.#secret = undefined
    await rm(this.file, { force: true })
  }
}
