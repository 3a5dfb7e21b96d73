import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { DIRECTORY_MAX_ENTRIES, DIRECTORY_MAX_PARTS, MAX_BUNDLE_BYTES, MAX_BYTES_FIGURE, MAX_UPDATE_TOKEN_CHARS, MAX_UPDATE_URL_CHARS, MAX_EPOCH_MS, MAX_SAFE_COUNT, MAX_SECONDS_FIGURE, MIN_EPOCH_MS, TELEMETRY_MAX_FIELDS } from './limits.js'

/**
 * The payload schemas of the MQTT contract. One source: the TypeScript types, the runtime checks on both
 * sides and the published JSON Schema all come from here.
 */

const Id = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' })
/** An endpoint is an extension or user on one connector: its PBX-side identifier, e.g. "201". */
const EndpointId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[^\\x00-\\x1f\\x7f]*$' })
/** Every time in the contract (see limits.ts for why this range). */
const EpochMs = Type.Integer({ minimum: MIN_EPOCH_MS, maximum: MAX_EPOCH_MS, description: 'epoch milliseconds between 1970-01-01 and 2100-01-01' })
/** A short machine-readable text ("call.connected", "osbiz", "1.4.2"): no control characters. */
const Token = (maxLength: number) => Type.String({ maxLength, pattern: '^[^\\x00-\\x1f\\x7f]*$', description: `text without control characters, at most ${maxLength} characters` })
/** Words for a person (a name, a reason): no NUL, which PostgreSQL text refuses. */
const Text = (maxLength: number) => Type.String({ maxLength, pattern: '^[^\\x00]*$', description: `text without NUL characters, at most ${maxLength} characters` })
/** A count that only grows (messages sent, records): exact in a JavaScript number. */
const Count = Type.Integer({ minimum: 0, maximum: MAX_SAFE_COUNT })

export const CallStateSchema = Type.Union([
  Type.Literal('idle'),
  Type.Literal('ringing'),
  Type.Literal('busy'),
  Type.Literal('held'),
])
export type CallState = Static<typeof CallStateSchema>

export const DndOwnerSchema = Type.Union([Type.Literal('gateway'), Type.Literal('user'), Type.Null()])
export type DndOwner = Static<typeof DndOwnerSchema>

export const LinkStateSchema = Type.Union([Type.Literal('connecting'), Type.Literal('connected'), Type.Literal('offline')])
export type LinkState = Static<typeof LinkStateSchema>

export const StatusDataSchema = Type.Object({
  state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
  version: Token(64),
  /** Epoch ms when this gateway process started. */
  startedAt: EpochMs,
  reason: Type.Optional(Text(256)),
  /** The root file system slot the box booted from (added within v1): "A" or "B"; absent where the box has no A/B. */
  slot: Type.Optional(Token(16)),
}, { additionalProperties: false })
export type StatusData = Static<typeof StatusDataSchema>

export const LinkDataSchema = Type.Object({
  connectorId: Id,
  pbxType: Token(32),
  state: LinkStateSchema,
  reason: Type.Optional(Text(512)),
  /** Epoch ms when the link entered this state. */
  since: EpochMs,
  /** Extensions the link serves (a directory holds at most DIRECTORY_MAX_PARTS × DIRECTORY_MAX_ENTRIES). */
  endpoints: Type.Integer({ minimum: 0, maximum: DIRECTORY_MAX_PARTS * DIRECTORY_MAX_ENTRIES }),
}, { additionalProperties: false })
export type LinkData = Static<typeof LinkDataSchema>

export const EndpointDataSchema = Type.Object({
  connectorId: Id,
  endpointId: EndpointId,
  state: CallStateSchema,
  /** Live calls on the endpoint (any state). */
  calls: Type.Integer({ minimum: 0, maximum: 1000 }),
  dnd: Type.Boolean(),
  /** Who switched DND on: the gateway (on the relay's command) or the person. Null when DND is off. */
  dndOwner: DndOwnerSchema,
  /** Epoch ms of the PBX observation this state came from. */
  changedAt: EpochMs,
  /** Short machine-readable cause, e.g. "call.connected", "dnd.user", "snapshot". */
  cause: Token(64),
}, { additionalProperties: false })
export type EndpointData = Static<typeof EndpointDataSchema>

export const DirectoryEntrySchema = Type.Object({
  endpointId: EndpointId,
  name: Text(256),
  email: Type.Optional(Token(320)),
}, { additionalProperties: false })
export type DirectoryEntry = Static<typeof DirectoryEntrySchema>

/**
 * One part of a connector's PBX directory. A directory larger than DIRECTORY_MAX_ENTRIES (or than the directory
 * topic's byte cap) travels as several parts, `part` 1..`parts`, each applied on its own (added within v1: without
 * them a message is the whole directory, part 1 of 1).
 */
export const DirectoryDataSchema = Type.Object({
  connectorId: Id,
  entries: Type.Array(DirectoryEntrySchema, { maxItems: DIRECTORY_MAX_ENTRIES, description: `a part holds at most ${DIRECTORY_MAX_ENTRIES} entries: send a larger directory in parts (part, parts)` }),
  part: Type.Optional(Type.Integer({ minimum: 1, maximum: DIRECTORY_MAX_PARTS })),
  parts: Type.Optional(Type.Integer({ minimum: 1, maximum: DIRECTORY_MAX_PARTS })),
}, { additionalProperties: false })
export type DirectoryData = Static<typeof DirectoryDataSchema>

const Bytes = Type.Integer({ minimum: 0, maximum: MAX_BYTES_FIGURE })
const Seconds = Type.Number({ minimum: 0, maximum: MAX_SECONDS_FIGURE })

export const TelemetryDataSchema = Type.Object({
  /** Seconds since the gateway process started (v1 meaning, kept). */
  uptimeS: Seconds,
  rssBytes: Bytes,
  eventsSent: Count,
  invalidCommands: Count,
  // The box's health (added within v1, all optional so older peers interoperate).
  /** Whole-machine CPU load in percent (0–100) since the previous sample. */
  cpuPercent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
  /** 1-minute load average. */
  load1: Type.Optional(Type.Number({ minimum: 0, maximum: 10_000 })),
  memUsedBytes: Type.Optional(Bytes),
  memTotalBytes: Type.Optional(Bytes),
  /** CPU/SoC temperature; absent when the hardware has no sensor (never 0 for "unknown"). */
  temperatureC: Type.Optional(Type.Number({ minimum: -60, maximum: 150 })),
  /** The file system holding the gateway's data. */
  diskUsedBytes: Type.Optional(Bytes),
  diskTotalBytes: Type.Optional(Bytes),
  /** Seconds since the operating system booted. */
  systemUptimeS: Type.Optional(Seconds),
  /** Seconds since the gateway process started (same as uptimeS, named for clarity). */
  processUptimeS: Type.Optional(Seconds),
  /** The gateway software version. */
  version: Type.Optional(Token(64)),
  /** State changes waiting in the box's outbox. */
  outboxRecords: Type.Optional(Count),
}, {
  // Fields a newer gateway adds within v1 pass, as scalars only: never arrays or objects the relay would store.
  additionalProperties: Type.Union([Type.Number({ minimum: -MAX_SAFE_COUNT, maximum: MAX_SAFE_COUNT }), Text(256), Type.Boolean(), Type.Null()]),
  maxProperties: TELEMETRY_MAX_FIELDS,
})
export type TelemetryData = Static<typeof TelemetryDataSchema>

export const ErrorInfoSchema = Type.Object({
  code: Token(64),
  message: Text(1024),
}, { additionalProperties: false })

export const ResultDataSchema = Type.Object({
  correlationId: Id,
  command: Token(32),
  ok: Type.Boolean(),
  error: Type.Optional(ErrorInfoSchema),
  /** The endpoint state after the command, when the command concerned one endpoint. */
  endpoint: Type.Optional(EndpointDataSchema),
}, { additionalProperties: false })
export type ResultData = Static<typeof ResultDataSchema>

export const SetDndDataSchema = Type.Object({
  connectorId: Id,
  endpointId: EndpointId,
  dnd: Type.Boolean(),
  /** Why the relay wants it, for the gateway's log ("Teams InAConferenceCall"). */
  reason: Text(256),
}, { additionalProperties: false })
export type SetDndData = Static<typeof SetDndDataSchema>

export const ResyncDataSchema = Type.Object({
  reason: Text(256),
}, { additionalProperties: false })
export type ResyncData = Static<typeof ResyncDataSchema>

/** `cmd/ping` (added within v1): the gateway answers with an ok result at once. */
export const PingDataSchema = Type.Object({
  /** Epoch ms at the relay when it sent the ping (round-trip measurement). */
  sentAt: EpochMs,
}, { additionalProperties: false })
export type PingData = Static<typeof PingDataSchema>

/** A release version as the relay and the box name it: "1.4.2", "2026.12.1-rc1". */
const ReleaseVersion = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]*$', description: 'a release version of letters, digits and . _ + - (at most 64 characters), e.g. 1.4.2' })
const Sha256Hex = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'the SHA-256 of the bundle as 64 lower-case hex digits' })
const BundleBytes = Type.Integer({ minimum: 1, maximum: MAX_BUNDLE_BYTES, description: `bundle size in bytes, at most ${MAX_BUNDLE_BYTES} (4 GiB)` })

/**
 * When the box reboots into the new slot: "now" (as soon as the bundle is installed) or an ISO 8601 time with a
 * zone that the admin chose (a maintenance window). The download and install happen at once either way.
 */
export const InstallAtSchema = Type.Union([
  Type.Literal('now'),
  Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,3})?)?(Z|[+-]\\d{2}:\\d{2})$', description: 'an ISO 8601 time with a zone, e.g. 2026-12-04T02:00:00Z' }),
])

/**
 * `cmd/update` (added within v1): fetch the bundle at `url` (https on the relay, `Authorization: Bearer <token>`),
 * check its size and SHA-256 and signature, install it to the inactive slot and reboot at `installAt`. The box
 * answers at once with a result (accepted or refused) and then reports on its `update` topic.
 */
export const UpdateCommandDataSchema = Type.Object({
  /** The rollout's id for this box: every progress report carries it. */
  updateId: Id,
  version: ReleaseVersion,
  size: BundleBytes,
  sha256: Sha256Hex,
  url: Type.String({ maxLength: MAX_UPDATE_URL_CHARS, pattern: '^https://[^\\s\\x00-\\x1f\\x7f]+$', description: `an https URL of at most ${MAX_UPDATE_URL_CHARS} characters` }),
  /** Short-lived, for this gateway and this version only. */
  token: Type.String({ minLength: 16, maxLength: MAX_UPDATE_TOKEN_CHARS, pattern: '^[A-Za-z0-9._~-]+$', description: `a download token of 16 to ${MAX_UPDATE_TOKEN_CHARS} URL-safe characters` }),
  installAt: InstallAtSchema,
}, { additionalProperties: false })
export type UpdateCommandData = Static<typeof UpdateCommandDataSchema>

/**
 * Where an update stands on the box. queued: accepted, waiting to start; downloading: fetching (bytes of total);
 * verifying: size, SHA-256 and signature; installing: writing the inactive slot; rebooting: installed, rebooting
 * now or at the chosen time; healthy: booted the new version and marked it good; rolled-back: the new version did
 * not come up healthy and the box went back to the previous one (reason); failed: stopped before a reboot (reason).
 */
export const UpdateStateSchema = Type.Union([
  Type.Literal('queued'),
  Type.Literal('downloading'),
  Type.Literal('verifying'),
  Type.Literal('installing'),
  Type.Literal('rebooting'),
  Type.Literal('healthy'),
  Type.Literal('rolled-back'),
  Type.Literal('failed'),
])
export type UpdateState = Static<typeof UpdateStateSchema>
export const UPDATE_STATES: readonly UpdateState[] = ['queued', 'downloading', 'verifying', 'installing', 'rebooting', 'healthy', 'rolled-back', 'failed']
/** States after which the box does nothing more for this update. */
export const FINAL_UPDATE_STATES: readonly UpdateState[] = ['healthy', 'rolled-back', 'failed']

/** The `update` topic (added within v1): progress of one update, and what the box runs now. */
export const UpdateProgressDataSchema = Type.Object({
  updateId: Id,
  /** The version being installed. */
  version: ReleaseVersion,
  state: UpdateStateSchema,
  /** downloading: bytes on disk so far, of total. */
  bytes: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_BUNDLE_BYTES })),
  total: Type.Optional(BundleBytes),
  /** rolled-back and failed: why, in words. */
  reason: Type.Optional(Text(512)),
  /** What the box runs now. */
  runningVersion: Token(64),
  slot: Token(16),
  /** Epoch ms when the box entered this state. */
  at: EpochMs,
}, { additionalProperties: false })
export type UpdateProgressData = Static<typeof UpdateProgressDataSchema>

/** Message type name → data schema. The envelope's `type` picks one. */
export const MessageSchemas = {
  status: StatusDataSchema,
  link: LinkDataSchema,
  endpoint: EndpointDataSchema,
  directory: DirectoryDataSchema,
  telemetry: TelemetryDataSchema,
  result: ResultDataSchema,
  'cmd.setDnd': SetDndDataSchema,
  'cmd.resync': ResyncDataSchema,
  'cmd.ping': PingDataSchema,
  'cmd.update': UpdateCommandDataSchema,
  update: UpdateProgressDataSchema,
} as const satisfies Record<string, TSchema>

export type MessageType = keyof typeof MessageSchemas
export type MessageData<T extends MessageType> = Static<(typeof MessageSchemas)[T]>

export const EnvelopeHeaderSchema = Type.Object({
  v: Type.Integer({ minimum: 1, maximum: 1 }),
  /** Unique message id (UUID). For commands it is also the correlation id of the result. */
  id: Id,
  /** Epoch ms at the sender. */
  ts: EpochMs,
  gatewayId: Id,
  /** Monotonic per sender and gateway, surviving restarts (gaps allowed). */
  seq: Count,
  type: Token(32),
  data: Type.Unknown(),
}, { additionalProperties: false })

export interface Envelope<T extends MessageType = MessageType> {
  v: number
  id: string
  ts: number
  gatewayId: string
  seq: number
  type: T
  data: MessageData<T>
}

export type AnyEnvelope = { [K in MessageType]: Envelope<K> }[MessageType]
