/**
 * Reading an initramfs without unpacking it to disk or needing cpio on the host: the names of its files, for the
 * Pi image check (which drivers the initrd has).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { gunzipSync } from 'node:zlib'
import { run } from './steps.js'

/** Names of the files in a newc cpio archive (the initrd), up to its trailer; `rest` is what follows it. */
export function cpioNames(archive: Buffer): { names: string[]; rest: Buffer } {
  const names: string[] = []
  let at = 0
  const pad4 = (n: number) => (n + 3) & ~3
  while (at + 110 <= archive.length) {
    const magic = archive.toString('latin1', at, at + 6)
    if (magic !== '070701' && magic !== '070702') throw new Error(`not a newc cpio header at byte ${at} ("${magic}")`)
    const field = (i: number) => parseInt(archive.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16)
    const fileSize = field(6)
    const nameSize = field(11)
    const name = archive.toString('utf8', at + 110, at + 110 + nameSize - 1)
    at = pad4(at + 110 + nameSize)
    at = pad4(at + fileSize)
    if (name === 'TRAILER!!!') break
    names.push(name)
  }
  while (at < archive.length && archive[at] === 0) at++
  return { names, rest: archive.subarray(at) }
}

/** Every file name in an initramfs: uncompressed early archives first, then the zstd, gzip or xz main one. */
export async function initrdNames(initrd: Buffer, scratch: string): Promise<string[]> {
  const names: string[] = []
  let rest = initrd
  while (rest.length) {
    if (rest.toString('latin1', 0, 6).startsWith('07070')) {
      const part = cpioNames(rest)
      names.push(...part.names)
      rest = part.rest
      continue
    }
    let plain: Buffer
    if (rest[0] === 0x1f && rest[1] === 0x8b) plain = gunzipSync(rest)
    else if (rest.readUInt32LE(0) === 0xfd2fb528) {
      await writeFile(`${scratch}.zst`, rest)
      await run('zstd', ['-q', '-d', '-f', '-o', scratch, `${scratch}.zst`])
      plain = await readFile(scratch)
    }
    else throw new Error(`unknown initrd compression (first bytes ${rest.subarray(0, 4).toString('hex')})`)
    names.push(...cpioNames(plain).names)
    break
  }
  return names
}
