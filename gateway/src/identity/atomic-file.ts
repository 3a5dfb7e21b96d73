import { randomBytes } from 'node:crypto'
import { link, open, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'

/**
 * Writes a file so that a power cut leaves either the old content or the new, never a torn file: write a temp
 * file beside it, fsync it, rename it over the target, fsync the folder (so the rename itself is on disk).
 * `exclusive`: create only, failing with EEXIST if the file exists.
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600, options: { exclusive?: boolean } = {}): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`)
  const handle = await open(temp, 'wx', mode)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    // exclusive: a hard link fails with EEXIST when the name exists (like O_EXCL), and still never shows a torn file.
    if (options.exclusive) await link(temp, file)
    else await rename(temp, file)
  } catch (err) {
    await unlink(temp).catch(() => undefined)
    throw err
  }
  if (options.exclusive) await unlink(temp)
  await syncDirectory(dirname(file))
}

/** fsync of a file's data: what was written to it is on disk before anything relies on it. */
export async function syncFile(file: string): Promise<void> {
  const handle = await open(file, 'r+')
  try {
    await handle.datasync()
  } finally {
    await handle.close()
  }
}

/** fsync of a folder: makes renames and new entries in it durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } catch (err) {
    // Some file systems (and Windows) refuse fsync on a directory; the rename is still atomic there.
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL' && (err as NodeJS.ErrnoException).code !== 'EPERM') throw err
  } finally {
    await handle.close()
  }
}
