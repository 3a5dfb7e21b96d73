import { AdapterError, type PbxAdapter, type PbxObservation } from '../../gateway/src/adapters/types.js'
import { Recorder } from '../helpers/recorder.js'
import type { TapTest } from '../helpers/tap-types.js'

/**
 * The behaviour every PBX adapter owes the gateway core, run against each adapter's own simulator.
 * PBX-neutral: it speaks only PbxAdapter and a small "person at the phone" driver for the PBX.
 */

/**
 * What people (and the network) do to the PBX, through the PBX's simulator. The sim-kit phone-system model
 * (`gateway/src/adapters/sim-kit/`) that every simulator is built on is one, as it is; results may come
 * synchronously or as promises.
 */
export interface ContractPbx {
  /** An external call rings at the extension; gives the PBX's call id. */
  incomingCall(extension: string): string | Promise<string>
  answer(callId: string): void | Promise<void>
  hangup(callId: string): void | Promise<void>
  hold(callId: string, extension: string): void | Promise<void>
  retrieve(callId: string, extension: string): void | Promise<void>
  /** The person presses the DND key. */
  setDndAtPhone(extension: string, on: boolean): void | Promise<void>
  getDnd(extension: string): boolean | Promise<boolean>
  /** Cuts the adapter's connection(s) as a PBX restart would; the PBX keeps running. */
  dropAllConnections(): unknown
}

export interface ContractSetup {
  /** Not started yet: the suite subscribes first, then calls start(). */
  adapter: PbxAdapter
  pbx: ContractPbx
  /** At least two extensions the adapter is configured for, all idle with DND off. */
  extensions: string[]
  /** Stops adapter and PBX. */
  stop(): Promise<void>
}

export interface AdapterContractHarness {
  name: string
  start(): Promise<ContractSetup>
}

/** A simulator as the suite needs it: the person-at-the-phone driver and a stop. */
export type ContractSimulator = ContractPbx & { stop(): Promise<void> }

/**
 * Runs the suite against an adapter and its simulator: `start` starts a fresh simulator and builds the
 * (unstarted) adapter for it; teardown stops the adapter, then the simulator.
 */
export function runSimulatorContract(
  t: TapTest,
  name: string,
  start: () => Promise<{ simulator: ContractSimulator; adapter: PbxAdapter; extensions: string[] }>,
): void {
  runAdapterContract(t, {
    name,
    async start() {
      const { simulator, adapter, extensions } = await start()
      return {
        adapter,
        pbx: simulator,
        extensions,
        async stop() {
          await adapter.stop()
          await simulator.stop()
        },
      }
    },
  })
}

type Observation<K extends PbxObservation['kind']> = Extract<PbxObservation, { kind: K }>

function isKind<K extends PbxObservation['kind']>(kind: K) {
  return (observation: PbxObservation): observation is Observation<K> => observation.kind === kind
}

interface Session {
  setup: ContractSetup
  observations: Recorder<PbxObservation>
  first: string
  second: string
}

export function runAdapterContract(t: TapTest, harness: AdapterContractHarness): void {
  /** Starts adapter and PBX, and waits until every endpoint has its first snapshot. */
  async function connected(test: TapTest): Promise<Session> {
    const setup = await harness.start()
    test.teardown(() => setup.stop())
    const [first, second] = setup.extensions
    if (first === undefined || second === undefined) throw new Error(`${harness.name}: the contract needs two extensions`)
    const observations = new Recorder<PbxObservation>()
    setup.adapter.onObservation(observations.push)
    await setup.adapter.start()
    await observations.waitFor((o) => o.kind === 'link' && o.state === 'connected', { what: 'link connected' })
    for (const extension of setup.extensions) {
      await observations.waitFor((o) => o.kind === 'snapshot' && o.endpointId === extension, { what: `snapshot of ${extension}` })
    }
    return { setup, observations, first, second }
  }

  function callState(endpointId: string, callId: string, state: string) {
    return (o: PbxObservation): boolean => o.kind === 'call' && o.endpointId === endpointId && o.callId === callId && o.state === state
  }

  /**
   * Waits for a DND change on another extension: events from one PBX arrive in order, so anything our command
   * caused has been observed once this barrier is.
   */
  async function barrier(session: Session, from: number): Promise<void> {
    const { pbx } = session.setup
    const on = !(await pbx.getDnd(session.second))
    await pbx.setDndAtPhone(session.second, on)
    await session.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === session.second && o.dnd === on, { from, what: 'barrier' })
  }

  t.test(`${harness.name}: connects, publishes the directory and one snapshot per endpoint`, async (t) => {
    const { setup, observations } = await connected(t)
    const links = observations.items.filter(isKind('link'))
    t.same(links.map((o) => o.state), ['connecting', 'connected'], 'link goes connecting → connected')
    const directory = observations.items.find(isKind('directory'))
    t.ok(directory, 'a directory observation')
    const ids = directory?.entries.map((entry) => entry.endpointId) ?? []
    for (const extension of setup.extensions) {
      t.ok(ids.includes(extension), `directory lists ${extension}`)
      const snapshot = observations.items.filter(isKind('snapshot')).find((o) => o.endpointId === extension)
      t.same(snapshot && { calls: snapshot.calls, dnd: snapshot.dnd }, { calls: [], dnd: false }, `${extension} starts idle, DND off`)
    }
  })

  t.test(`${harness.name}: reports a call as alerting, connected, cleared`, async (t) => {
    const session = await connected(t)
    const { pbx } = session.setup
    const from = session.observations.mark()
    const callId = await pbx.incomingCall(session.first)
    const alerting = await session.observations.waitFor(callState(session.first, callId, 'alerting'), { from, what: 'alerting' })
    await pbx.answer(callId)
    const connectedCall = await session.observations.waitFor(callState(session.first, callId, 'connected'), { from, what: 'connected' })
    await pbx.hangup(callId)
    const cleared = await session.observations.waitFor(callState(session.first, callId, 'cleared'), { from, what: 'cleared' })
    const order = [alerting, connectedCall, cleared].map((o) => session.observations.items.indexOf(o))
    t.ok(order[0]! < order[1]! && order[1]! < order[2]!, 'in that order')
    t.notOk(
      session.observations.since(from).some((o) => o.kind === 'call' && o.endpointId === session.second),
      'the other endpoint saw nothing',
    )
  })

  t.test(`${harness.name}: reports hold and retrieve on the holding endpoint`, async (t) => {
    const session = await connected(t)
    const { pbx } = session.setup
    const from = session.observations.mark()
    const callId = await pbx.incomingCall(session.first)
    await pbx.answer(callId)
    await session.observations.waitFor(callState(session.first, callId, 'connected'), { from })
    await pbx.hold(callId, session.first)
    await session.observations.waitFor(callState(session.first, callId, 'held'), { from, what: 'held' })
    const afterHold = session.observations.mark()
    await pbx.retrieve(callId, session.first)
    await session.observations.waitFor(callState(session.first, callId, 'connected'), { from: afterHold, what: 'connected again' })
    await pbx.hangup(callId)
    await session.observations.waitFor(callState(session.first, callId, 'cleared'), { from, what: 'cleared' })
    t.pass('held → connected → cleared')
  })

  t.test(`${harness.name}: DND pressed at the phone is the person's`, async (t) => {
    const session = await connected(t)
    const { pbx } = session.setup
    const from = session.observations.mark()
    await pbx.setDndAtPhone(session.first, true)
    const on = await session.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === session.first && o.dnd, { from, what: 'dnd on' })
    t.match(on, { byCommand: false }, 'DND on, not by command')
    await pbx.setDndAtPhone(session.first, false)
    const off = await session.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === session.first && !o.dnd, { from, what: 'dnd off' })
    t.match(off, { byCommand: false }, 'DND off, not by command')
  })

  t.test(`${harness.name}: setDnd is confirmed and attributed to the command, both ways`, async (t) => {
    const session = await connected(t)
    const { adapter, pbx } = session.setup
    for (const dnd of [true, false]) {
      const from = session.observations.mark()
      t.same(await adapter.setDnd(session.first, dnd), { dnd }, `setDnd(${dnd}) resolves with the confirmed state`)
      t.equal(await pbx.getDnd(session.first), dnd, 'the PBX has it')
      await session.observations.waitFor((o) => o.kind === 'dnd' && o.endpointId === session.first && o.dnd === dnd && o.byCommand, { from })
      await barrier(session, from)
      const mine = session.observations.since(from).filter(isKind('dnd')).filter((o) => o.endpointId === session.first)
      t.ok(mine.length > 0 && mine.every((o) => o.byCommand && o.dnd === dnd), 'every resulting DND observation is by command')
    }
  })

  t.test(`${harness.name}: setDnd to the current value resolves`, async (t) => {
    const session = await connected(t)
    const { adapter } = session.setup
    const from = session.observations.mark()
    t.same(await adapter.setDnd(session.first, false), { dnd: false }, 'resolves although nothing changes')
    await barrier(session, from)
    const mine = session.observations.since(from).filter(isKind('dnd')).filter((o) => o.endpointId === session.first)
    t.ok(mine.every((o) => o.byCommand && !o.dnd), 'nothing is attributed to the person')
    t.ok(mine.some((o) => o.byCommand), 'the confirmed state is reported')
  })

  t.test(`${harness.name}: setDnd on an unknown endpoint rejects with an AdapterError`, async (t) => {
    const session = await connected(t)
    const error = await session.setup.adapter.setDnd('no-such-endpoint', true).then(() => undefined, (caught: unknown) => caught)
    t.ok(error instanceof AdapterError, 'an AdapterError')
    t.match(error, { code: /_UNKNOWN_DEVICE$/ }, 'with an UNKNOWN_DEVICE code')
  })

  t.test(`${harness.name}: reconnects after the link drops and re-reads the state`, async (t) => {
    const session = await connected(t)
    const { pbx } = session.setup
    const from = session.observations.mark()
    await pbx.dropAllConnections()
    await session.observations.waitFor((o) => o.kind === 'link' && o.state === 'offline', { from, what: 'offline' })
    // This call starts while the adapter is disconnected (its first retry waits at least half the initial
    // backoff, 500 ms with the 1 s base): only a fresh read after reconnecting can reveal it.
    const callId = await pbx.incomingCall(session.first)
    await session.observations.waitFor((o) => o.kind === 'link' && o.state === 'connected', { from, timeoutMs: 10000, what: 'connected again' })
    const snapshot = await session.observations.waitFor(
      (o) => o.kind === 'snapshot' && o.endpointId === session.first,
      { from, what: 'a new snapshot' },
    )
    t.same(snapshot.kind === 'snapshot' && snapshot.calls, [{ callId, state: 'alerting' }], 'the new snapshot has the call')
    await session.observations.waitFor((o) => o.kind === 'snapshot' && o.endpointId === session.second, { from, what: 'second snapshot' })
    await pbx.answer(callId)
    await session.observations.waitFor(callState(session.first, callId, 'connected'), { from, what: 'events flow again' })
    t.pass('events flow on the new link')
  })

  t.test(`${harness.name}: stop is idempotent and ends all reporting`, async (t) => {
    const session = await connected(t)
    const { adapter, pbx } = session.setup
    await adapter.stop()
    await adapter.stop()
    const from = session.observations.mark()
    await t.rejects(adapter.setDnd(session.first, true), { code: /_NOT_CONNECTED$/ }, 'commands fail while stopped')
    await pbx.setDndAtPhone(session.first, true)
    // Nothing can announce the absence of an observation; give a stray one time to show up.
    await new Promise((resolve) => setTimeout(resolve, 150))
    t.same(session.observations.since(from), [], 'no observation after stop')
  })
}
