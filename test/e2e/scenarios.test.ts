import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Stack } from '../../scripts/stack.js'
import { captureLogger } from '../helpers/capture-logger.js'
import { eventually } from '../helpers/eventually.js'

/**
 * The field scenarios (issue 3), end to end over the real wire protocols: OSBiz CSTA simulators, MQTT through
 * the embedded broker, the relay on PGlite, Graph over HTTPS with msal.
 */
t.test('field scenarios', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'scenarios-'))
  const { logger } = captureLogger('warn')
  const stack = new Stack({
    dataDir,
    logger,
    // Alice also has an extension on a second PBX (a branch office).
    branchPeople: [{ extension: '501', name: 'Alice Adams', email: 'alice@contoso.example' }],
    sync: { pollIntervalMs: 200, gatewayOfflineGraceMs: 1500 },
  })
  t.teardown(async () => {
    await stack.stop()
    await rm(dataDir, { recursive: true, force: true })
  })
  await stack.start()
  const { graph, pbx } = stack
  const branch = stack.branchPbx!
  const appId = stack.graphClient.clientId
  const id = (name: string) => graph.findUser(`${name}@contoso.example`)!.id
  const relay = () => stack.relay!
  const personId = (name: string) => relay().engine.personByEmail('contoso', `${name}@contoso.example`)!.row.id
  const events = async (name: string, kind: string) => (await relay().store.listEvents({ personId: personId(name), limit: 1000 })).filter((e) => e.kind === kind)
  await eventually(() => stack.gateway?.links().every((l) => l.state === 'connected') && stack.gateway.links().length === 2, 'both PBX links')
  await eventually(() => relay().engine.graphUserIds('contoso').length === 3, 'people mapped')
  await eventually(() => relay().engine.person(personId('alice'))?.endpoints.size === 2, "alice's two extensions mapped to her")

  await t.test('Teams "Busy" from a calendar entry does not set PBX DND (default)', async (t) => {
    graph.teams(id('carol')).joinCalendarMeeting()
    await eventually(async () => (await events('carol', 'teams.observed')).some((e) => /Busy\/InAMeeting/.test(e.message)), 'the relay to read the meeting')
    await new Promise((resolve) => setTimeout(resolve, 600))
    t.notOk(pbx.getDnd('203'), 'no DND on her extension')
    t.equal((await events('carol', 'pbx.dnd.on')).length, 0)
    t.match(relay().engine.explain(personId('carol'))?.teams, { wantsPbxDnd: false, reason: /a calendar meeting is not DND/ }, 'the why view says why not')
    graph.teams(id('carol')).endActivity()
  })

  await t.test('screen sharing sets PBX DND, and stopping it releases it', async (t) => {
    graph.teams(id('bob')).startPresenting()
    await eventually(() => pbx.getDnd('202'), "DND on bob's extension")
    const why = await eventually(() => relay().engine.explain(personId('bob'))?.summary.find((line) => /^Extension 202 .*DND is on, set by us/.test(line)), "the why view to show bob's DND")
    t.match(why, /because Teams DoNotDisturb\/Presenting/, 'the why view names the reason')
    graph.teams(id('bob')).endActivity()
    await eventually(() => !pbx.getDnd('202'), 'released')
  })

  await t.test('a person in a call on PBX A gets DND on PBX B', async (t) => {
    const call = pbx.incomingCall('201')
    pbx.answer(call)
    await eventually(() => branch.getDnd('501'), "DND on alice's branch extension")
    t.ok(graph.getSession(id('alice'), appId), 'and Teams shows her busy')
    t.notOk(pbx.getDnd('201'), 'the extension in the call itself gets no DND (reflect option off)')
    const logged = await eventually(async () => (await events('alice', 'pbx.dnd.on')).find((e) => e.message.includes('DND on 501')), 'the decision in the event log')
    t.match(logged.message, /because a call on extension 201/, 'the event log names the reason')
    pbx.hangup(call)
    await eventually(() => !branch.getDnd('501') && !graph.getSession(id('alice'), appId), 'both released after the call')
  })

  await t.test("a person's manual Teams DND in full mode sets PBX DND, and removing it clears it", async (t) => {
    graph.teams(id('bob')).setDnd()
    await eventually(() => pbx.getDnd('202'), "DND on bob's extension")
    // The PBX shows DND before its acknowledgement reaches the gateway, which records the owner then.
    const owner = await eventually(() => stack.gateway?.endpoints().find((e) => e.endpointId === '202')?.dndOwner ?? undefined, 'the gateway to record who set the DND')
    t.equal(owner, 'gateway')
    graph.teams(id('bob')).resetStatus()
    await eventually(() => !pbx.getDnd('202'), 'released when he clears it in Teams')
  })

  await t.test('a stale state is cleared after the gateway goes offline', async (t) => {
    const call = pbx.incomingCall('201')
    pbx.answer(call)
    await eventually(() => graph.getSession(id('alice'), appId), "alice's session")
    await stack.stopGateway('connection lost')
    await eventually(async () => (await events('alice', 'gateway.stale')).length > 0, 'the grace period to end', 10_000)
    await eventually(() => graph.getSession(id('alice'), appId) === undefined, 'her session cleared although nobody hung up')
    t.match(relay().engine.explain(personId('alice'))?.summary.join(' '), /its gateway is offline/)
    pbx.hangup(call)
    await stack.startGateway()
    await eventually(() => relay().engine.person(personId('alice'))?.endpoints.get(`${stack.gatewayId}/osbiz-main/201`)?.stale === false, 'fresh state after the gateway is back')
    t.notOk(graph.getSession(id('alice'), appId), 'nothing set again: the call ended while the gateway was away')
  })
})
