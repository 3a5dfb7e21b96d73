import type { GraphPresenceApi, GraphUser, PresenceReading, SettablePresence } from '../src/graph/types.js'
import type { PresenceStore } from './presence-store.js'

/**
 * The simulator's presence rules behind the relay's GraphPresenceApi, without HTTP: for property tests and the
 * decision benchmark, where thousands of runs or 50,000 people make the HTTPS round trip the thing measured.
 * The HTTP simulator (graph-simulator.ts) and the real SDK are tested separately.
 */
export class InProcessGraph implements GraphPresenceApi {
  writes = 0
  constructor(
    readonly presence: PresenceStore,
    readonly users: Map<string, GraphUser>,
    readonly appId: string,
  ) {}

  async setPresence(userId: string, presence: SettablePresence, expirationMinutes: number): Promise<void> {
    this.writes++
    this.presence.setAppSession(userId, this.appId, presence, expirationMinutes * 60_000)
  }

  async clearPresence(userId: string): Promise<'cleared' | 'absent'> {
    this.writes++
    return this.presence.clearAppSession(userId, this.appId) ? 'cleared' : 'absent'
  }

  async getPresences(userIds: readonly string[]): Promise<PresenceReading[]> {
    return userIds.map((userId) => ({ userId, ...this.presence.read(userId) }))
  }

  async findUser(idOrUpn: string): Promise<GraphUser | undefined> {
    return this.users.get(idOrUpn.toLowerCase())
  }
}
