import { DIRECTORY_MAX_ENTRIES, DIRECTORY_MAX_PARTS, MAX_PAYLOAD_BYTES_BY_KIND } from './limits.js'
import type { DirectoryData, DirectoryEntry } from './schemas.js'

/** Room left in a directory part for the envelope and the part's own fields. */
const ENVELOPE_ROOM_BYTES = 2048

/**
 * Splits a connector's PBX directory into parts the relay accepts: at most DIRECTORY_MAX_ENTRIES entries and the
 * directory topic's byte cap each (long names in many scripts take up to 6 bytes a character in JSON), numbered
 * `part` 1..`parts`. An empty directory is one empty part. Entries beyond DIRECTORY_MAX_PARTS parts are left out
 * and counted in `omitted`, for the caller to log.
 */
export function splitDirectory(connectorId: string, entries: readonly DirectoryEntry[]): { parts: DirectoryData[]; omitted: number } {
  const budget = MAX_PAYLOAD_BYTES_BY_KIND.directory - ENVELOPE_ROOM_BYTES
  const chunks: DirectoryEntry[][] = [[]]
  let bytes = 0
  for (const entry of entries) {
    const size = Buffer.byteLength(JSON.stringify(entry)) + 1
    const current = chunks[chunks.length - 1]!
    if (current.length > 0 && (current.length >= DIRECTORY_MAX_ENTRIES || bytes + size > budget)) {
      chunks.push([entry])
      bytes = size
    } else {
      current.push(entry)
      bytes += size
    }
  }
  const kept = chunks.slice(0, DIRECTORY_MAX_PARTS)
  const omitted = chunks.slice(DIRECTORY_MAX_PARTS).reduce((n, c) => n + c.length, 0)
  return { parts: kept.map((chunk, i) => ({ connectorId, entries: chunk, part: i + 1, parts: kept.length })), omitted }
}
