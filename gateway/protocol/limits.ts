import type { ParsedTopic } from './topics.js'

/**
 * Every bound of the wire contract, in one place, with the reason for each. A gateway is a peer the relay does not
 * trust with its own resources: whatever it sends must fit these before any handler sees it, so one gateway can
 * neither break the relay's database writes nor take its event loop, memory or another tenant's share.
 */

/**
 * Times are epoch milliseconds from 1970-01-01 up to 2100-01-01 (UTC). A JavaScript Date and PostgreSQL's
 * timestamptz both hold every such value (a Date ends at 8.64e15, the year 275760: one beyond it made the store's
 * batch fail for every tenant). 1970 is allowed on purpose: a box whose clock is not set yet still gets its states
 * through, and the relay warns about its clock. How far ahead of the relay a time may be is checked at ingest.
 */
export const MIN_EPOCH_MS = 0
export const MAX_EPOCH_MS = Date.UTC(2100, 0, 1)

/** Sequence numbers and counters stay exact in a JavaScript number (and fit PostgreSQL's bigint). */
export const MAX_SAFE_COUNT = Number.MAX_SAFE_INTEGER

/** Byte figures (memory, disk): 1 PiB is far beyond any gateway box. */
export const MAX_BYTES_FIGURE = 2 ** 50

/** Durations in seconds (uptimes): 100 years. */
export const MAX_SECONDS_FIGURE = 100 * 365 * 24 * 3600

/**
 * A PBX directory is sent in parts of at most this many entries. The PBXs we serve: OpenScape Business up to 500
 * users (one part), IP Office up to 3,000 users on one system (6 parts), innovaphone larger (more parts).
 */
export const DIRECTORY_MAX_ENTRIES = 500
/** Parts of one directory: 100 × 500 = 50,000 extensions per connector (the relay holds 50,000 per gateway). */
export const DIRECTORY_MAX_PARTS = 100

/**
 * Largest payload per topic kind, checked before the JSON is parsed. Each is the largest valid message of that kind
 * (every string at its maximum length, JSON-escaped) with room to spare; a directory part of 500 entries is about
 * 40 KB in practice, and the gateway splits by bytes as well as by count so a part never exceeds its cap.
 */
export const MAX_PAYLOAD_BYTES_BY_KIND: Readonly<Record<ParsedTopic['kind'], number>> = {
  status: 8 * 1024,
  link: 8 * 1024,
  endpoint: 4 * 1024,
  directory: 256 * 1024,
  telemetry: 16 * 1024,
  result: 16 * 1024,
  command: 4 * 1024,
  update: 4 * 1024,
}

/** Telemetry may carry fields a newer gateway adds within v1, but only scalars, and this many fields in all. */
export const TELEMETRY_MAX_FIELDS = 40

/**
 * An update bundle (a RAUC image of the root file system): a Pi or VM root file system is a few hundred MB; 4 GiB
 * is far beyond it and still exact in every figure. A `cmd/update` naming more is refused before a byte is fetched.
 */
export const MAX_BUNDLE_BYTES = 4 * 1024 ** 3

/** The download address in `cmd/update`: an https URL on the relay, well under the 4 KiB command cap. */
export const MAX_UPDATE_URL_CHARS = 1024

/** The per-command download token in `cmd/update` (see cloud-relay/src/updates/README.md). */
export const MAX_UPDATE_TOKEN_CHARS = 512
