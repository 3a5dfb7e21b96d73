import { PROTOCOL_MAJOR } from './version.js'

/** The only place topic strings are built or parsed. Topics never contain `+` or `#` when published. */
export const TOPIC_PREFIX = `pbxgw/v${PROTOCOL_MAJOR}`

const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

/** Gateway, connector and correlation ids must be safe single topic levels. */
export function isTopicId(value: string): boolean {
  return ID_PATTERN.test(value)
}

export const topics = {
  root: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}`,
  status: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}/status`,
  link: (gatewayId: string, connectorId: string) => `${TOPIC_PREFIX}/${gatewayId}/link/${connectorId}`,
  endpoint: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}/evt/endpoint`,
  directory: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}/evt/directory`,
  telemetry: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}/telemetry`,
  /** Update progress (added within v1). */
  update: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}/update`,
  result: (gatewayId: string, correlationId: string) => `${TOPIC_PREFIX}/${gatewayId}/res/${correlationId}`,
  command: (gatewayId: string, name: CommandName) => `${TOPIC_PREFIX}/${gatewayId}/cmd/${name}`,
  /** What a gateway subscribes to: its own commands. */
  commandFilter: (gatewayId: string) => `${TOPIC_PREFIX}/${gatewayId}/cmd/#`,
  /** What the relay subscribes to: everything every gateway publishes (commands are filtered on parse). */
  relayFilter: () => `${TOPIC_PREFIX}/+/#`,
} as const

/** `ping` (added within v1): answered with a result, so the relay can prove the path both ways. */
/** `update` (added within v1): install a release bundle (see schemas.ts UpdateCommandDataSchema). */
export type CommandName = 'setDnd' | 'resync' | 'ping' | 'update'
export const COMMAND_NAMES: readonly CommandName[] = ['setDnd', 'resync', 'ping', 'update']

export type ParsedTopic =
  | { gatewayId: string; kind: 'status' }
  | { gatewayId: string; kind: 'link'; connectorId: string }
  | { gatewayId: string; kind: 'endpoint' }
  | { gatewayId: string; kind: 'directory' }
  | { gatewayId: string; kind: 'telemetry' }
  | { gatewayId: string; kind: 'update' }
  | { gatewayId: string; kind: 'result'; correlationId: string }
  | { gatewayId: string; kind: 'command'; name: CommandName }

/** Parses a concrete topic. Returns undefined for anything outside the contract. */
export function parseTopic(topic: string): ParsedTopic | undefined {
  const parts = topic.split('/')
  if (parts.length < 4 || `${parts[0]}/${parts[1]}` !== TOPIC_PREFIX) return undefined
  const gatewayId = parts[2]!
  if (!isTopicId(gatewayId)) return undefined
  const rest = parts.slice(3)
  const [a, b] = rest
  if (rest.length === 1) {
    if (a === 'status') return { gatewayId, kind: 'status' }
    if (a === 'telemetry') return { gatewayId, kind: 'telemetry' }
    if (a === 'update') return { gatewayId, kind: 'update' }
    return undefined
  }
  if (rest.length !== 2 || b === undefined) return undefined
  if (a === 'link' && isTopicId(b)) return { gatewayId, kind: 'link', connectorId: b }
  if (a === 'evt' && b === 'endpoint') return { gatewayId, kind: 'endpoint' }
  if (a === 'evt' && b === 'directory') return { gatewayId, kind: 'directory' }
  if (a === 'res' && isTopicId(b)) return { gatewayId, kind: 'result', correlationId: b }
  if (a === 'cmd' && (COMMAND_NAMES as readonly string[]).includes(b)) return { gatewayId, kind: 'command', name: b as CommandName }
  return undefined
}
