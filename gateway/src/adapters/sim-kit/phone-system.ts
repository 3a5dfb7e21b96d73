/**
 * The phone system every PBX simulator shares: people (extension, name, e-mail, DND, plus the vendor's own
 * data), two-party calls with one leg per party, and what people do at their phones (call, answer, hold,
 * retrieve, hang up, press DND). It speaks no wire protocol: each change becomes one `PhoneEvent`, which the
 * vendor's simulator encodes in its own wire format (MTCTI-3, innovaphone JSON, CSTA XML) by implementing
 * `announce`. The scripting methods are synchronous and throw on a wrong call id or extension, so the same
 * object serves tests, the CLI command loop and the contract suite's "person at the phone" (ContractPbx).
 */

/** A leg as the model sees it; vendors map it to their wire states. */
export type LegState = 'dialing' | 'ringback' | 'ringing' | 'connected'

export interface Leg {
  /** The party's number: a person's extension or an outside number. */
  party: string
  /** Whether the party is one of this PBX's people (outside parties have legs too: CSTA reports them). */
  internal: boolean
  /** 'out' for the caller's leg, 'in' for the callee's. */
  direction: 'in' | 'out'
  state: LegState
  /** This party put the call on hold. */
  held: boolean
  /** A vendor state set by a script (`setLeg`) that the model does not interpret; any later change clears it. */
  wire?: number
}

export interface Call {
  id: string
  /** Caller and callee numbers, as dialled. */
  calling: string
  called: string
  /** The caller's leg first. */
  legs: Leg[]
}

export interface PersonFields {
  extension: string
  name: string
  email?: string | undefined
}

export interface Person<D> {
  extension: string
  name: string
  email: string | undefined
  dnd: boolean
  /** The vendor's own fields (ids, presence, …). */
  data: D
}

export type PhoneEvent<D> =
  /** A new call: the caller's leg rings back, the callee's leg rings. */
  | { kind: 'placed'; call: Call }
  /** The callee answered; `changed` are the legs that became connected. */
  | { kind: 'answered'; call: Call; answering: Leg; changed: Leg[] }
  | { kind: 'held' | 'retrieved'; call: Call; leg: Leg }
  /** The call ended; `legs` as they were, `releasing` hung up first. The call is already gone. */
  | { kind: 'cleared'; call: Call; releasing: Leg }
  /** A script set one leg directly (`setLeg`). */
  | { kind: 'leg'; call: Call; leg: Leg }
  | { kind: 'dnd'; person: Person<D> }
  | { kind: 'person-added' | 'person-removed'; person: Person<D> }
  /** Name, e-mail, extension or vendor data changed; `previous` is the extension before. */
  | { kind: 'person-changed'; person: Person<D>; previous: string }

export interface PersonPatch<D> {
  extension?: string
  name?: string
  email?: string | undefined
  data?: Partial<D>
}

/** The outside caller when a script names none. */
export const DEFAULT_EXTERNAL = '+4989123456'

export abstract class PhoneSystem<D> {
  readonly #people = new Map<string, Person<D>>()
  readonly #calls = new Map<string, Call>()
  #nextCallId = 1

  /** The vendor's wire encoding of one change, sent to whoever the vendor's protocol says. */
  protected abstract announce(event: PhoneEvent<D>): void

  /** Cuts every client connection as a PBX restart or network loss would; returns how many. */
  abstract dropAllConnections(): number

  /** The vendor's data for a person added without any (the CLI's `add`). */
  protected abstract defaultData(fields: PersonFields): D

  // --- People ---------------------------------------------------------------------------------------------

  /** Adds a person; `announce` is called only when `quiet` is false (not for the initial list). */
  addPerson(fields: PersonFields, data: D = this.defaultData(fields), quiet = false): Person<D> {
    if (this.#people.has(fields.extension)) throw new Error(`extension ${fields.extension} exists`)
    const person: Person<D> = { extension: fields.extension, name: fields.name, email: fields.email, dnd: false, data }
    this.#people.set(person.extension, person)
    if (!quiet) this.announce({ kind: 'person-added', person })
    return person
  }

  removePerson(extension: string): void {
    const person = this.person(extension)
    this.#people.delete(extension)
    this.announce({ kind: 'person-removed', person })
  }

  updatePerson(extension: string, patch: PersonPatch<D>): void {
    const person = this.person(extension)
    const next = patch.extension ?? extension
    if (next !== extension) {
      if (this.#people.has(next)) throw new Error(`extension ${next} exists`)
      // Keep the order (directory and replication read it) while the key changes.
      const entries = [...this.#people].map(([key, value]): [string, Person<D>] => [key === extension ? next : key, value])
      this.#people.clear()
      for (const [key, value] of entries) this.#people.set(key, value)
      for (const call of this.#calls.values()) for (const leg of call.legs) if (leg.internal && leg.party === extension) leg.party = next
      person.extension = next
    }
    if (patch.name !== undefined) person.name = patch.name
    if ('email' in patch) person.email = patch.email
    if (patch.data !== undefined) Object.assign(person.data as object, patch.data)
    this.announce({ kind: 'person-changed', person, previous: extension })
  }

  person(extension: string): Person<D> {
    const person = this.#people.get(extension)
    if (person === undefined) throw new Error(`unknown extension ${extension}`)
    return person
  }

  findPerson(extension: string): Person<D> | undefined {
    return this.#people.get(extension)
  }

  people(): Person<D>[] {
    return [...this.#people.values()]
  }

  // --- DND ------------------------------------------------------------------------------------------------

  /** The person presses the DND key. */
  setDndAtPhone(extension: string, on: boolean): void {
    this.setDnd(extension, on)
  }

  /** Sets DND from the phone or a client request; no event when nothing changes. Returns whether it changed. */
  setDnd(extension: string, on: boolean): boolean {
    const person = this.person(extension)
    if (person.dnd === on) return false
    person.dnd = on
    this.announce({ kind: 'dnd', person })
    return true
  }

  getDnd(extension: string): boolean {
    return this.person(extension).dnd
  }

  // --- Calls ----------------------------------------------------------------------------------------------

  /** A call from outside (or from extension `from`) rings at `extension`; returns the call id. */
  incomingCall(extension: string, from: string = DEFAULT_EXTERNAL): string {
    this.person(extension)
    return this.#place(from, extension)
  }

  /** `extension` dials `to`: an internal number rings there, an outside one rings far away. */
  outgoingCall(extension: string, to: string = DEFAULT_EXTERNAL): string {
    this.person(extension)
    return this.#place(extension, to)
  }

  /** The ringing party answers; the caller's ringback becomes connected too. */
  answer(callId: string): void {
    const call = this.call(callId)
    const answering = call.legs.find((leg) => leg.state === 'ringing')
    if (answering === undefined) throw new Error(`call ${callId} is not ringing`)
    const changed = call.legs.filter((leg) => leg.state === 'ringing' || leg.state === 'ringback')
    for (const leg of changed) this.#set(leg, 'connected')
    this.announce({ kind: 'answered', call, answering, changed })
  }

  hold(callId: string, extension: string): void {
    const call = this.call(callId)
    const leg = this.leg(call, extension)
    if (leg.state !== 'connected' || leg.held) throw new Error(`${extension} is not connected in call ${callId}`)
    this.#set(leg, 'connected', true)
    this.announce({ kind: 'held', call, leg })
  }

  retrieve(callId: string, extension: string): void {
    const call = this.call(callId)
    const leg = this.leg(call, extension)
    if (!leg.held) throw new Error(`${extension} does not hold call ${callId}`)
    this.#set(leg, 'connected', false)
    this.announce({ kind: 'retrieved', call, leg })
  }

  /** `releasing` (default: the caller) hangs up; the call ends for everyone. */
  hangup(callId: string, releasing?: string): void {
    const call = this.call(callId)
    const first = releasing === undefined ? call.legs[0] : this.leg(call, releasing)
    if (first === undefined) throw new Error(`call ${callId} has no party`)
    this.#calls.delete(call.id)
    this.announce({ kind: 'cleared', call, releasing: first })
  }

  /**
   * Sets one leg as a script says, creating the call (with this id) or the leg as needed. `wire` is a vendor
   * state the model carries without reading it (e.g. an IP Office CallInfo state it has no name for).
   */
  setLeg(callId: string, extension: string, change: { state: LegState; held?: boolean; direction?: 'in' | 'out'; wire?: number }): void {
    this.person(extension)
    const id = Number(callId)
    if (!Number.isInteger(id) || id <= 0) throw new Error(`bad call id ${callId}`)
    const key = String(id)
    let call = this.#calls.get(key)
    if (call === undefined) {
      call = { id: key, calling: extension, called: extension, legs: [] }
      this.#calls.set(key, call)
      if (id >= this.#nextCallId) this.#nextCallId = id + 1
    }
    let leg = call.legs.find((candidate) => candidate.party === extension)
    if (leg === undefined) {
      leg = { party: extension, internal: true, direction: change.direction ?? 'in', state: change.state, held: false }
      call.legs.push(leg)
    }
    this.#set(leg, change.state, change.held ?? false)
    if (change.wire !== undefined) leg.wire = change.wire
    this.announce({ kind: 'leg', call, leg })
  }

  call(callId: string): Call {
    const call = this.#calls.get(callId)
    if (call === undefined) throw new Error(`unknown call ${callId}`)
    return call
  }

  /** Every live call, oldest first. */
  liveCalls(): Call[] {
    return [...this.#calls.values()]
  }

  /** The person's legs over all live calls. */
  legsOf(extension: string): Array<{ call: Call; leg: Leg }> {
    const found: Array<{ call: Call; leg: Leg }> = []
    for (const call of this.#calls.values()) {
      for (const leg of call.legs) if (leg.internal && leg.party === extension) found.push({ call, leg })
    }
    return found
  }

  leg(call: Call, party: string): Leg {
    const leg = call.legs.find((candidate) => candidate.party === party)
    if (leg === undefined) throw new Error(`${party} is not in call ${call.id}`)
    return leg
  }

  /** How the CLI's `status` shows a leg; vendors show their wire state. */
  legLabel(_call: Call, leg: Leg): string {
    return leg.held ? 'held' : leg.state
  }

  // --- Inside ---------------------------------------------------------------------------------------------

  #place(from: string, to: string): string {
    if (from === to) throw new Error(`${from} cannot call itself`)
    const call: Call = {
      id: String(this.#nextCallId++),
      calling: from,
      called: to,
      legs: [
        { party: from, internal: this.#people.has(from), direction: 'out', state: 'ringback', held: false },
        { party: to, internal: this.#people.has(to), direction: 'in', state: 'ringing', held: false },
      ],
    }
    this.#calls.set(call.id, call)
    this.announce({ kind: 'placed', call })
    return call.id
  }

  #set(leg: Leg, state: LegState, held = leg.held): void {
    leg.state = state
    leg.held = held
    delete leg.wire
  }
}
