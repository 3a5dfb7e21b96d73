import { readFile } from 'node:fs/promises'
import { LinkError } from './link-error.js'

/** Where a connector dials, as its messages name it. */
export interface LinkTarget {
  /** "the CSTA link", "the MTCTI-3 link", "the link". */
  linkName: string
  /** host:port or the URL. */
  address: string
  host: string
  requestTimeoutMs: number
}

/** A CA file the connector names but the box cannot read; its message is already the installer's words. */
export class CaFileUnreadable extends Error {}

/** Reads a PEM CA file named by the connector field `field`; throws CaFileUnreadable in plain words. */
export async function readCaFile(field: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8')
  } catch (error) {
    throw new CaFileUnreadable(`cannot read ${field} ${path} (${error instanceof Error ? error.message : String(error)}): fix the path or the file's permissions`)
  }
}

/**
 * The installer's words for the ways any link fails to open (refused, no answer, no such host, unreachable),
 * with the next step. `refusedHint` is the vendor's reason a port refuses ("is the CSTA link enabled ...?").
 * Vendor codes (a login refused, a wrong subprotocol) are the adapter's to word; they fall back here.
 */
export function describeConnectFailure(error: unknown, target: LinkTarget, refusedHint: string): string {
  const { address, host } = target
  if (error instanceof CaFileUnreadable) return error.message
  if (!(error instanceof LinkError)) return `cannot connect to ${address}: ${String(error)}`
  const errno = (error.detail as { errno?: unknown }).errno
  switch (error.code) {
    case 'CONNECT_REFUSED':
      return `connection refused by ${address}: ${refusedHint}`
    case 'CONNECT_TIMEOUT':
      return `no answer from ${address} within ${target.requestTimeoutMs / 1000} s: check the PBX address and any firewall in between`
    case 'CONNECT_FAILED':
      if (errno === 'ENOTFOUND' || errno === 'EAI_AGAIN') return `cannot resolve ${host}: check the PBX address`
      if (errno === 'EHOSTUNREACH' || errno === 'ENETUNREACH') return `${host} is unreachable from the gateway: check the address and the network`
      return error.message
    default:
      return `cannot open ${target.linkName} to ${address}: ${error.message}`
  }
}
