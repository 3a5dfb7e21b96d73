/** Major version of the wire contract. It is part of every topic; a breaking change makes `v2`. */
export const PROTOCOL_MAJOR = 1
/** Envelope format version, carried in every payload as `v`. Additive changes keep it. */
export const ENVELOPE_VERSION = 1
/** Largest MQTT payload either side accepts. A directory of 5,000 people fits comfortably. */
export const MAX_PAYLOAD_BYTES = 1024 * 1024
