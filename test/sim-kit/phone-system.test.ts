import t from 'tap'
import { PhoneSystem, type PersonFields, type PhoneEvent } from '../../gateway/src/adapters/sim-kit/phone-system.js'
import { runCommand, splitWords, type SimulatorCli } from '../../gateway/src/adapters/sim-kit/command-loop.js'

/** The model with the smallest possible "wire": it writes each event down as one line. */
class RecordingPbx extends PhoneSystem<{ tag: string }> {
  readonly lines: string[] = []
  dropped = 0

  protected announce(event: PhoneEvent<{ tag: string }>): void {
    switch (event.kind) {
      case 'placed':
      case 'leg':
        this.lines.push(`${event.kind} ${event.call.id} ${event.call.legs.map((leg) => `${leg.party}:${leg.state}${leg.internal ? '' : '(out)'}`).join(' ')}`)
        return
      case 'answered':
        this.lines.push(`answered ${event.call.id} by ${event.answering.party}, changed ${event.changed.map((leg) => leg.party).join(',')}`)
        return
      case 'held':
      case 'retrieved':
        this.lines.push(`${event.kind} ${event.call.id} ${event.leg.party}`)
        return
      case 'cleared':
        this.lines.push(`cleared ${event.call.id} first ${event.releasing.party}`)
        return
      case 'dnd':
        this.lines.push(`dnd ${event.person.extension} ${event.person.dnd}`)
        return
      case 'person-changed':
        this.lines.push(`changed ${event.previous} → ${event.person.extension} ${event.person.email ?? '-'} ${event.person.data.tag}`)
        return
      default:
        this.lines.push(`${event.kind} ${event.person.extension}`)
    }
  }

  dropAllConnections(): number {
    return ++this.dropped
  }

  protected defaultData(fields: PersonFields): { tag: string } {
    return { tag: `default-${fields.extension}` }
  }
}

function pbx(): RecordingPbx {
  const system = new RecordingPbx()
  for (const extension of ['201', '202']) system.addPerson({ extension, name: `P${extension}` }, { tag: extension }, true)
  return system
}

t.test('a call: placed, answered, held, retrieved, cleared, each one event with the legs as they are', async (t) => {
  const system = pbx()
  const id = system.outgoingCall('201', '202')
  system.answer(id)
  system.hold(id, '202')
  t.same(system.liveCalls()[0]?.legs.map((leg) => [leg.party, leg.state, leg.held]), [['201', 'connected', false], ['202', 'connected', true]])
  system.retrieve(id, '202')
  system.hangup(id, '202')
  const outside = system.incomingCall('201')
  system.hangup(outside)
  t.same(system.lines, [
    'placed 1 201:ringback 202:ringing',
    'answered 1 by 202, changed 201,202',
    'held 1 202',
    'retrieved 1 202',
    'cleared 1 first 202',
    'placed 2 +4989123456:ringback(out) 201:ringing',
    'cleared 2 first +4989123456',
  ])
  t.same(system.liveCalls(), [], 'no call left')
})

t.test('wrong scripts throw in the same words for every vendor and change nothing', async (t) => {
  const system = pbx()
  t.throws(() => system.incomingCall('299'), /unknown extension 299/)
  t.throws(() => system.answer('7'), /unknown call 7/)
  const id = system.incomingCall('201')
  t.throws(() => system.hold(id, '201'), /201 is not connected in call 1/)
  t.throws(() => system.retrieve(id, '201'), /201 does not hold call 1/)
  t.throws(() => system.hangup(id, '202'), /202 is not in call 1/)
  t.throws(() => system.outgoingCall('201', '201'), /cannot call itself/)
  system.answer(id)
  t.throws(() => system.answer(id), /is not ringing/)
  t.equal(system.lines.length, 2, 'only the placement and the answer were announced')
})

t.test('DND: an event only on a change; people added, changed (re-keyed, calls follow) and removed', async (t) => {
  const system = pbx()
  system.setDndAtPhone('201', true)
  t.equal(system.setDnd('201', true), false, 'the same value changes nothing')
  t.ok(system.getDnd('201'))
  const id = system.incomingCall('202')
  system.addPerson({ extension: '203', name: 'P203' })
  system.updatePerson('202', { extension: '252', email: 'p@contoso.example', data: { tag: 'moved' } })
  t.same(system.call(id).legs.map((leg) => leg.party), ['+4989123456', '252'], 'the call follows the new extension')
  t.same(system.people().map((person) => person.extension), ['201', '252', '203'], 'the order is kept')
  system.removePerson('203')
  t.same(system.lines.filter((line) => !line.startsWith('placed')), [
    'dnd 201 true', 'person-added 203', 'changed 202 → 252 p@contoso.example moved', 'person-removed 203',
  ])
  system.setLeg('40', '201', { state: 'connected', wire: 99 })
  t.match(system.call('40').legs[0], { party: '201', state: 'connected', wire: 99 }, 'a raw vendor state is carried')
  t.equal(system.incomingCall('201'), '41', 'ids continue after a scripted one')
})

t.test('the shared CLI commands drive the model', async (t) => {
  const simulator = pbx()
  const cli: SimulatorCli = { simulator: Object.assign(simulator, { stop: async () => undefined }), banner: [], status: () => ['links 0'], commands: { ping: ([word]) => `pong ${word ?? ''}` } }
  const run = (line: string): string => runCommand(cli, 'usage\nCommands on stdin:\n  …', splitWords(line))
  t.equal(run('call 201'), 'call 1')
  t.equal(run('dial 202 +4930111'), 'call 2')
  t.equal(run('answer 1'), 'answered')
  t.equal(run('hold 1 201'), 'held')
  t.equal(run('dnd 202 on'), 'dnd 202 on')
  t.equal(run('add 204 "Dave Dunn" dave@contoso.example'), 'added 204')
  t.equal(simulator.person('204').name, 'Dave Dunn', 'a quoted name is one word')
  t.equal(simulator.person('204').data.tag, 'default-204', 'with the vendor default data')
  t.equal(run('status'), [
    'links 0',
    '  dnd 201=off 202=on 204=off',
    '  call 1: +4989123456=connected 201=held',
    '  call 2: 202=ringback +4930111=ringing',
  ].join('\n'))
  t.equal(run('ping x'), 'pong x', 'vendor commands come first')
  t.equal(run('drop'), 'dropped 1 connection(s)')
  t.equal(run('help'), 'Commands on stdin:\n  …')
  t.equal(run('quit'), 'quit')
  t.throws(() => run('dnd 201 maybe'), /needs on or off/)
  t.throws(() => run('frobnicate'), /unknown command "frobnicate"/)
})
