import { parseTopic } from '#protocol/topics.js'

/** Retained links per gateway: one per connector; a box has a handful. */
export const MAX_RETAINED_LINKS = 64
/** A status or link message is well under 1 KiB; 16 KiB leaves room and caps a gateway at about 1 MiB retained. */
export const MAX_RETAINED_BYTES = 16 * 1024

export type RetainVerdict = { ok: true } | { ok: false; reason: 'topic' | 'payload_too_large' | 'too_many_links'; why: string }

/**
 * What a gateway may keep retained on the broker: its own `status` and `link/{connectorId}` topics, at most
 * MAX_RETAINED_LINKS links, each at most MAX_RETAINED_BYTES. A retained message is held in the broker's memory
 * until cleared: one box that retained 600 messages of 1 MiB on topics of its choosing grew the relay by 650 MB.
 * The ledger tracks the links each gateway has retained, so the cap holds across publishes.
 */
export class RetainedLedger {
  readonly #links = new Map<string, Set<string>>()

  /** Decides on a non-empty retained publish by `gatewayId` (the authenticated identity) and records it if allowed. */
  admit(gatewayId: string, topic: string, bytes: number): RetainVerdict {
    const parsed = parseTopic(topic)
    if (!parsed || parsed.gatewayId !== gatewayId || (parsed.kind !== 'status' && parsed.kind !== 'link')) {
      return { ok: false, reason: 'topic', why: 'a gateway may retain only its own status and link/{connectorId} topics' }
    }
    if (bytes > MAX_RETAINED_BYTES) {
      return { ok: false, reason: 'payload_too_large', why: `a retained message may hold at most ${MAX_RETAINED_BYTES} bytes, this one has ${bytes}` }
    }
    if (parsed.kind === 'link') {
      const links = this.#links.get(gatewayId) ?? new Set<string>()
      if (!links.has(topic) && links.size >= MAX_RETAINED_LINKS) {
        return { ok: false, reason: 'too_many_links', why: `a gateway may retain at most ${MAX_RETAINED_LINKS} links` }
      }
      links.add(topic)
      this.#links.set(gatewayId, links)
    }
    return { ok: true }
  }

  /** An empty retained publish cleared `topic`. */
  cleared(topic: string): void {
    const parsed = parseTopic(topic)
    if (parsed?.kind !== 'link') return
    const links = this.#links.get(parsed.gatewayId)
    links?.delete(topic)
    if (links?.size === 0) this.#links.delete(parsed.gatewayId)
  }
}
