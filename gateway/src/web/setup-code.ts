import { createHash, randomInt, timingSafeEqual } from 'node:crypto'
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

/** Characters that cannot be mistaken for one another on a label or a console font (no 0/O, 1/I/L). */
const ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ'
const GROUPS = 3
const GROUP_LENGTH = 4

/** A new setup code, e.g. "7KQX-M3DW-9TPA": 12 characters of a 31-letter alphabet, about 59 bits, from crypto randomness. */
export function newSetupCode(): string {
  const groups: string[] = []
  for (let g = 0; g < GROUPS; g++) {
    let group = ''
    for (let i = 0; i < GROUP_LENGTH; i++) group += ALPHABET[randomInt(ALPHABET.length)]
    groups.push(group)
  }
  return groups.join('-')
}

/** As someone types it from a screen: any case, spaces or dashes or nothing between the groups. */
export function normaliseSetupCode(typed: string): string {
  return typed.toUpperCase().replace(/[^0-9A-Z]/g, '')
}

/** Compares two secrets in constant time, whatever their lengths (both are hashed first). */
export function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest()
  return timingSafeEqual(digest(a), digest(b))
}

export function setupCodeFile(dataDir: string): string {
  return join(dataDir, 'web', 'setup-code')
}

/**
 * The setup code of an unclaimed box, kept in `<dataDir>/web/setup-code` (0600) until the admin password is set.
 * Only someone with the box in hand can read it: the box prints it on its console and in its log at every start
 * while unclaimed (and an appliance shows it on its screen or label through `pendingSetupCode`).
 */
export class SetupCodeStore {
  readonly #file: string

  constructor(dataDir: string) {
    this.#file = setupCodeFile(dataDir)
  }

  get file(): string {
    return this.#file
  }

  async read(): Promise<string | undefined> {
    try {
      const code = (await readFile(this.#file, 'utf8')).trim()
      return code || undefined
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /** The stored code, or a new one made and stored now (created exclusively: two starts cannot make two codes). */
  async ensure(): Promise<string> {
    const existing = await this.read()
    if (existing) return existing
    const code = newSetupCode()
    await mkdir(join(this.#file, '..'), { recursive: true, mode: 0o700 })
    try {
      await writeFile(this.#file, `${code}\n`, { mode: 0o600, flag: 'wx' })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return (await this.read()) ?? code
      throw err
    }
    return code
  }

  /** True when `typed` is the stored code (constant time); false when there is none. */
  async matches(typed: string): Promise<boolean> {
    const stored = await this.read()
    if (!stored) return false
    return sameSecret(normaliseSetupCode(stored), normaliseSetupCode(typed))
  }

  /** Single use: gone once the password is set. */
  async remove(): Promise<void> {
    await unlink(this.#file).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
  }
}

/**
 * The code to show on the box itself (console, HDMI screen, label printer) while it is unclaimed; undefined once
 * the admin password is set. The one place the appliance's display reads it from.
 */
export async function pendingSetupCode(dataDir: string): Promise<string | undefined> {
  try {
    await readFile(join(dataDir, 'web', 'admin.json'))
    return undefined
  } catch {
    return new SetupCodeStore(dataDir).read()
  }
}

/** The lines printed on the box's console while it is unclaimed. */
export function setupCodeBanner(code: string, urls: readonly string[]): string {
  const rule = '='.repeat(64)
  return [
    rule,
    'This box has no admin password yet. To set it up, open the setup page:',
    ...urls.map((url) => `    ${url}`),
    `and enter the setup code:  ${code}`,
    'The code works once; a factory reset makes a new one.',
    rule,
    '',
  ].join('\n')
}
