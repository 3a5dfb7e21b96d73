import fc from 'fast-check'
import t from 'tap'
import { decide, dndCommandFor, type EndpointFacts, type PersonFacts } from '../../cloud-relay/src/sync/decide.js'
import { DEFAULT_SYNC_SETTINGS, type SyncSettings } from '../../cloud-relay/src/sync/mapping.js'
import { World, type PersonSpec } from './fixtures/world.js'

/**
 * The sync engine's invariants over random interleavings (issue 3): PBX calls on several extensions across two
 * PBXs, Teams activity, manual DND on both sides, duplicated, delayed and reordered delivery, and restarts of
 * the relay and the gateways. Each property runs at least 1,000 cases (FC_RUNS raises it).
 */
const RUNS = Number(process.env.FC_RUNS ?? 1000)

const PEOPLE: PersonSpec[] = [
  { email: 'alice@t1.example', endpoints: [{ gatewayId: 'gw1', endpointId: '201' }, { gatewayId: 'gw2', endpointId: '301' }] },
  { email: 'bob@t1.example', endpoints: [{ gatewayId: 'gw1', endpointId: '202' }] },
  { email: 'carol@t1.example', endpoints: [{ gatewayId: 'gw2', endpointId: '302' }], syncMode: 'telephony' },
]
const ENDPOINTS = PEOPLE.flatMap((p) => p.endpoints)
const EMAILS = PEOPLE.map((p) => p.email)

const endpointArb = fc.constantFrom(...ENDPOINTS)
const callOp = fc.constantFrom('ring', 'answer', 'hold', 'retrieve', 'hangup' as const)
const teamsOp = fc.constantFrom('call', 'conference', 'present', 'meeting', 'focus', 'manualDnd', 'end', 'reset' as const)

type Action =
  | { t: 'call'; e: { gatewayId: string; endpointId: string }; op: 'ring' | 'answer' | 'hold' | 'retrieve' | 'hangup' }
  | { t: 'teams'; who: string; op: 'call' | 'conference' | 'present' | 'meeting' | 'focus' | 'manualDnd' | 'end' | 'reset' }
  | { t: 'toggle'; e: { gatewayId: string; endpointId: string } }
  | { t: 'deliver'; pick: number; dup: boolean }
  | { t: 'poll' }
  | { t: 'tick'; ms: number }
  | { t: 'restartRelay' }
  | { t: 'restartGateway'; gw: string }

const inputArb = (withManualPbxDnd: boolean): fc.Arbitrary<Action> => fc.oneof(
  { weight: 4, arbitrary: fc.record({ t: fc.constant('call' as const), e: endpointArb, op: callOp }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('teams' as const), who: fc.constantFrom(...EMAILS), op: teamsOp }) },
  { weight: withManualPbxDnd ? 1 : 0, arbitrary: fc.record({ t: fc.constant('toggle' as const), e: endpointArb }) },
)
const scheduleArb: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('deliver' as const), pick: fc.nat(40), dup: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('poll' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 300_000 }) }) },
)
const restartArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ t: fc.constant('restartRelay' as const) }),
  fc.record({ t: fc.constant('restartGateway' as const), gw: fc.constantFrom('gw1', 'gw2') }),
)
const actionsArb = fc.array(fc.oneof(
  { weight: 5, arbitrary: inputArb(true) },
  { weight: 8, arbitrary: scheduleArb },
  { weight: 1, arbitrary: restartArb },
), { minLength: 1, maxLength: 60 })

async function apply(world: World, action: Action): Promise<void> {
  switch (action.t) {
    case 'call': return world.pbxCall(action.e.gatewayId, action.e.endpointId, action.op)
    case 'teams': return world.teams(action.who, action.op)
    case 'toggle': return world.pbxToggleDnd(action.e.gatewayId, action.e.endpointId)
    case 'deliver': await world.deliver(action.pick, action.dup); return
    case 'poll': return world.poll()
    case 'tick': return world.tick(action.ms)
    case 'restartRelay': return world.restartRelay()
    case 'restartGateway': return world.restartGateway(action.gw)
  }
}

/** Activity stops: every call ends, every Teams activity and manual Teams status ends. PBX DND the person set stays. */
function stopActivity(world: World): void {
  for (const e of ENDPOINTS) world.pbxCall(e.gatewayId, e.endpointId, 'hangup')
  for (const email of EMAILS) {
    world.teams(email, 'end')
    world.teams(email, 'reset')
  }
}

async function run(actions: Action[], settings: SyncSettings = DEFAULT_SYNC_SETTINGS): Promise<World> {
  const world = new World(PEOPLE, settings)
  await world.start()
  for (const action of actions) await apply(world, action)
  return world
}

t.test('(1) once activity stops and events settle, nothing we own remains set', async (t) => {
  await fc.assert(fc.asyncProperty(actionsArb, async (actions) => {
    const world = await run(actions)
    stopActivity(world)
    await world.drain()
    world.stop()
    const left = world.ownedLeftovers()
    if (left.length) throw new Error(`left behind: ${left.join(', ')}`)
  }), { numRuns: RUNS })
  t.pass(`${RUNS} random interleavings`)
})

t.test('(2) a DND the person set is never cleared by us', async (t) => {
  await fc.assert(fc.asyncProperty(actionsArb, async (actions) => {
    const world = await run(actions)
    stopActivity(world)
    await world.drain()
    world.stop()
    if (world.violations.length) throw new Error(world.violations.join('; '))
    // And every DND still on after the activity stopped is the person's own.
    for (const [key, value] of Object.entries(world.observable())) {
      if (value.startsWith('dnd:') && value !== 'dnd:user') throw new Error(`${key} is ${value}`)
    }
  }), { numRuns: RUNS })
  t.pass(`${RUNS} random interleavings`)
})

t.test('(3) commands per input event are bounded and the system comes to rest (no oscillation)', async (t) => {
  await fc.assert(fc.asyncProperty(actionsArb, async (actions) => {
    const world = await run(actions)
    const inputs = actions.filter((a) => a.t === 'call' || a.t === 'teams' || a.t === 'toggle').length
    const restarts = actions.filter((a) => a.t === 'restartRelay' || a.t === 'restartGateway').length
    await world.drain()
    const settled = world.effects
    for (let i = 0; i < 5; i++) {
      while (await world.deliver(0)) { /* in order */ }
      await world.poll()
      await world.tick(1000)
    }
    world.stop()
    if (world.effects !== settled) throw new Error(`${world.effects - settled} more effects after settling: oscillation`)
    // Each input can start at most: one Teams write and one DND command per extension of its person (3 here),
    // and each restart one resync round; setup and drain add a small constant.
    const bound = 4 * inputs + 8 * restarts + 10
    if (settled > bound) throw new Error(`${settled} effects for ${inputs} inputs and ${restarts} restarts (bound ${bound})`)
  }), { numRuns: RUNS })
  t.pass(`${RUNS} random interleavings`)
})

t.test('(4) the settled state does not depend on delivery order or duplication', async (t) => {
  // Inputs happen in batches; within a batch, messages are delivered either in order or reordered and
  // duplicated. Manual PBX DND is pressed only between batches: pressed during a command in flight, the
  // outcome legitimately depends on which arrives first at the phone.
  const batchArb = fc.record({
    inputs: fc.array(inputArb(false), { minLength: 1, maxLength: 8 }),
    chaos: fc.array(fc.record({ pick: fc.nat(40), dup: fc.boolean() }), { maxLength: 20 }),
    toggles: fc.array(endpointArb, { maxLength: 1 }),
    restartRelay: fc.boolean(),
  })
  await fc.assert(fc.asyncProperty(fc.array(batchArb, { minLength: 1, maxLength: 4 }), async (batches) => {
    const snapshots: Array<Record<string, string>[]> = []
    for (const chaotic of [false, true]) {
      const world = new World(PEOPLE)
      await world.start()
      const seen: Record<string, string>[] = []
      for (const batch of batches) {
        for (const [i, input] of batch.inputs.entries()) {
          await apply(world, input)
          const step = batch.chaos[i]
          if (chaotic && step) await world.deliver(step.pick, step.dup)
        }
        if (chaotic) for (const step of batch.chaos.slice(batch.inputs.length)) await world.deliver(step.pick, step.dup)
        if (batch.restartRelay) await world.restartRelay()
        await world.drain()
        seen.push(world.observable())
        for (const e of batch.toggles) world.pbxToggleDnd(e.gatewayId, e.endpointId)
        await world.drain()
      }
      stopActivity(world)
      await world.drain()
      seen.push(world.observable())
      world.stop()
      snapshots.push(seen)
    }
    const [ordered, chaotic] = snapshots
    for (let i = 0; i < ordered!.length; i++) {
      const a = JSON.stringify(ordered![i])
      const b = JSON.stringify(chaotic![i])
      if (a !== b) throw new Error(`after batch ${i}: in order ${a} but reordered/duplicated ${b}`)
    }
  }), { numRuns: RUNS })
  t.pass(`${RUNS} random batch sequences, each run twice`)
})

t.test('(5) the decision matches the mapping table for every combination', async (t) => {
  // The table of DESIGN §6, written out independently of mapping.ts.
  const CALL = ['InACall', 'InAConferenceCall', 'Presenting']
  const MANUAL = ['DoNotDisturb', 'UrgentInterruptionsOnly', 'Focusing']
  const expectedTrigger = (availability: string, activity: string, mode: string, s: SyncSettings): boolean => {
    if (mode === 'off') return false
    if (CALL.includes(activity)) return true
    if (activity === 'InAMeeting') return s.meetingSetsDnd
    if (availability === 'DoNotDisturb' || MANUAL.includes(activity)) return mode === 'full'
    return false
  }
  const presences = fc.constantFrom(
    ['Available', 'Available'], ['Busy', 'InACall'], ['Busy', 'InAConferenceCall'], ['DoNotDisturb', 'Presenting'], ['Busy', 'InAMeeting'],
    ['DoNotDisturb', 'DoNotDisturb'], ['DoNotDisturb', 'Focusing'], ['Busy', 'UrgentInterruptionsOnly'], ['Away', 'Away'], ['BeRightBack', 'BeRightBack'],
    ['Offline', 'OffWork'], ['Busy', 'Busy'], ['PresenceUnknown', 'PresenceUnknown'], ['Available', 'SomethingNew'],
  )
  const endpointFacts = (i: number) => fc.record({
    state: fc.constantFrom('idle', 'ringing', 'busy', 'held' as const),
    dnd: fc.boolean(),
    dndOwner: fc.constantFrom('gateway', 'user', null),
    stale: fc.boolean(),
    known: fc.boolean(),
  }).map((e): EndpointFacts => ({ key: `e${i}`, endpointId: `20${i}`, cause: 'x', ...e, dndOwner: e.dnd ? e.dndOwner ?? 'user' : null }))
  const settingsArb = fc.record({
    busyPresence: fc.constantFrom('DoNotDisturb/Presenting', 'Busy/InACall' as const),
    meetingSetsDnd: fc.boolean(),
    ringingIsBusy: fc.boolean(),
    dndOnOtherEndpointsDuringCall: fc.boolean(),
    reflectDndOnBusyEndpoint: fc.boolean(),
  })
  const factsArb = fc.record({
    syncMode: fc.constantFrom('off', 'telephony', 'full' as const),
    settings: settingsArb,
    endpoints: fc.tuple(endpointFacts(1), endpointFacts(2), endpointFacts(3)).chain((all) => fc.integer({ min: 1, max: 3 }).map((n) => all.slice(0, n))),
    teams: fc.option(presences.map(([availability, activity]) => ({ availability: availability!, activity: activity! })), { nil: undefined }),
    ourSession: fc.option(fc.constantFrom({ availability: 'DoNotDisturb', activity: 'Presenting' } as const, { availability: 'Busy', activity: 'InACall' } as const), { nil: undefined }),
    previousTrigger: fc.record({ trigger: fc.boolean(), reason: fc.constant('earlier') }),
    standBackFirst: fc.boolean(),
  })
  await fc.assert(fc.property(factsArb, (f) => {
    const facts: PersonFacts = { ...f, recentlyCleared: undefined, standBack: new Set(f.standBackFirst ? ['e1'] : []) }
    const d = decide(facts)
    const active = f.syncMode !== 'off'
    // Teams → PBX trigger, with our own session's echo keeping the previous conclusion.
    const echo = f.teams && f.ourSession && f.teams.availability === f.ourSession.availability && f.teams.activity === f.ourSession.activity
    const trigger = !f.teams ? false : echo ? f.previousTrigger.trigger && active : expectedTrigger(f.teams.availability, f.teams.activity, f.syncMode, f.settings)
    if (d.teamsTrigger !== trigger) throw new Error(`trigger ${d.teamsTrigger}, expected ${trigger}`)
    // PBX → Teams: a session exactly when a known, live extension is busy or held (or ringing if so configured).
    const counts = (e: EndpointFacts) => e.known && !e.stale && (e.state === 'busy' || e.state === 'held' || (f.settings.ringingIsBusy && e.state === 'ringing'))
    const busy = active ? f.endpoints.filter(counts) : []
    const wantSession = busy.length > 0
    if ((d.teamsSession !== null) !== wantSession) throw new Error(`session ${JSON.stringify(d.teamsSession)}, expected ${wantSession}`)
    if (d.teamsSession) {
      const expected = f.settings.busyPresence === 'Busy/InACall' ? 'Busy/InACall' : 'DoNotDisturb/Presenting'
      if (`${d.teamsSession.presence.availability}/${d.teamsSession.presence.activity}` !== expected) throw new Error('wrong session presence')
    }
    // PBX DND per extension.
    for (const e of f.endpoints) {
      const wanted = active && (trigger || (f.settings.dndOnOtherEndpointsDuringCall && busy.some((b) => b.key !== e.key)) || (f.settings.reflectDndOnBusyEndpoint && busy.some((b) => b.key === e.key)))
      const want = wanted && !e.stale && !facts.standBack.has(e.key)
      const got = d.endpoints.get(e.key)!
      if (got.wantDnd !== want) throw new Error(`${e.key}: wantDnd ${got.wantDnd}, expected ${want}`)
      // We only ever clear what we own, and never command an unknown or stale extension.
      const command = dndCommandFor(e, got)
      if (command && !command.dnd && e.dndOwner !== 'gateway') throw new Error(`${e.key}: would clear a DND owned by ${e.dndOwner}`)
      if (command && (!e.known || e.stale)) throw new Error(`${e.key}: command for an unknown or stale extension`)
      if (command?.dnd && e.dnd) throw new Error(`${e.key}: command to set a DND already on`)
    }
  }), { numRuns: Math.max(RUNS, 5000) })
  t.pass('every combination sampled agrees with the table')
})

t.test('the world harness itself: a PBX call makes a Teams session and DND on the other PBX; a Teams call makes DND', async (t) => {
  const world = await run([])
  world.pbxCall('gw1', '201', 'ring')
  world.pbxCall('gw1', '201', 'answer')
  await world.drain()
  t.same(world.observable(), {
    'gw1/201': 'off', 'gw1/202': 'off', 'gw2/301': 'dnd:gateway', 'gw2/302': 'off',
    'alice@t1.example': 'DoNotDisturb/Presenting', 'bob@t1.example': 'none', 'carol@t1.example': 'none',
  }, "alice's call on PBX 1 shows in Teams and sets DND on her extension on PBX 2")
  world.teams('bob@t1.example', 'conference')
  await world.drain()
  t.equal(world.observable()['gw1/202'], 'dnd:gateway')
  world.teams('carol@t1.example', 'manualDnd')
  await world.drain()
  t.equal(world.observable()['gw2/302'], 'off', "carol's manual Teams DND does not reach the PBX in telephony mode")
  stopActivity(world)
  await world.drain()
  t.same(world.ownedLeftovers(), [])
  world.stop()
})
