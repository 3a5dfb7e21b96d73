import type { Clock } from '#kernel/clock.js'

/** One DND command of ours that may still explain a DND change the PBX reports. */
export interface DndCommand {
  dnd: boolean
  /** Until when a matching change still counts as ours; open-ended until the PBX has answered. */
  until: number
}

/**
 * The DND commands sent per endpoint, so that a DND change the PBX reports is attributed to our own command
 * and never taken for the person's.
 */
export class DndCommands {
  readonly #clock: Clock
  readonly #pending = new Map<string, DndCommand[]>()

  constructor(clock: Clock) {
    this.#clock = clock
  }

  /** Registers a command before it is sent: the PBX may report the change before it answers. */
  add(endpointId: string, dnd: boolean): DndCommand {
    const command: DndCommand = { dnd, until: Number.POSITIVE_INFINITY }
    const commands = this.#pending.get(endpointId) ?? []
    commands.push(command)
    this.#pending.set(endpointId, commands)
    return command
  }

  /** True when a DND change matches a recent command of ours; each command explains at most one change. */
  take(endpointId: string, dnd: boolean): boolean {
    const commands = this.#pending.get(endpointId)
    if (commands === undefined) return false
    const now = this.#clock.now()
    const live = commands.filter((command) => command.until >= now)
    const index = live.findIndex((command) => command.dnd === dnd)
    if (index >= 0) live.splice(index, 1)
    if (live.length === 0) this.#pending.delete(endpointId)
    else this.#pending.set(endpointId, live)
    return index >= 0
  }

  /** Drops a command that can no longer cause a change (refused, or a value the endpoint already had). */
  forget(endpointId: string, command: DndCommand): void {
    const commands = this.#pending.get(endpointId)?.filter((entry) => entry !== command)
    if (commands === undefined || commands.length === 0) this.#pending.delete(endpointId)
    else this.#pending.set(endpointId, commands)
  }

  clear(): void {
    this.#pending.clear()
  }
}
