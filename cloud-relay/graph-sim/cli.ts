/**
 * `npm run sim:graph -- [options]`: runs the Graph simulator with demo users and one app, then reads
 * commands on stdin to act as the users' Teams clients. Console output is the point of a CLI.
 */
import { mkdtemp, mkdir, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { GraphSimulator, type SimulatedTeamsClient } from './graph-simulator.js'

const HELP = `Graph simulator: a local HTTPS Entra ID token endpoint + Microsoft Graph presence/users API.

Usage: npm run sim:graph -- [options]

Options:
  --port <n>            listen port (default 8443; 0 = any free port)
  --host <addr>         listen address (default 127.0.0.1)
  --tenant <guid>       tenant id (default: fixed demo tenant)
  --client-id <guid>    app client id (default: fixed demo app)
  --client-secret <s>   app client secret (default: random, printed)
  --ca-dir <dir>        where to write ca.pem (default: a new temp dir)
  --domain <domain>     demo users' domain (default contoso.example)
  -h, --help            this text

Commands on stdin (user = alice | bob | carol | a UPN | an object id):
  call <user>        Teams 1:1 call            -> Busy/InACall
  conference <user>  Teams meeting/group call  -> Busy/InAConferenceCall
  present <user>     presenting in a meeting   -> DoNotDisturb/Presenting
  meeting <user>     calendar meeting          -> Busy/InAMeeting
  focus <user>       focus time                -> DoNotDisturb/Focusing
  dnd <user>         manual Do not disturb     -> DoNotDisturb/DoNotDisturb (user-preferred)
  reset <user>       reset status (drop the manual status)
  end <user>         activity ended            -> Available/Available
  codes              device codes waiting for a sign-in
  approve <code> <user>  sign in as <user> for a device code (decline <code> refuses it)
  subs               live presence subscriptions
  reauth <sub-id>    send reauthorizationRequired now
  available <user>   signed in, status reset   -> Available/Available
  signout <user>     close Teams
  show [user]        aggregate presence and sessions
  advance <minutes>  move simulated time forward (sessions fade and expire)
  throttle <n> [s]   next n Graph requests get 429 with Retry-After s (default 1)
  fail <n> [status]  next n Graph requests fail with status (default 503)
  help | quit
`

const DEMO_TENANT = '7b2d1c43-9a5e-4f0b-8c61-0d3e2f4a5b6c'
const DEMO_APP = '3f9a7c21-6d84-4e1b-9b2f-5a0c8d7e6f41'
const DEMO_USERS = [
  { id: 'a1c3e5f7-0b2d-4f6a-8c1e-3b5d7f9a1c01', name: 'alice', displayName: 'Alice Example' },
  { id: 'b2d4f6a8-1c3e-4a7b-9d2f-4c6e8a0b2d02', name: 'bob', displayName: 'Bob Example' },
  { id: 'c3e5a7b9-2d4f-4b8c-8e3a-5d7f9b1c3e03', name: 'carol', displayName: 'Carol Example' },
]

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8443' },
      host: { type: 'string', default: '127.0.0.1' },
      tenant: { type: 'string', default: DEMO_TENANT },
      'client-id': { type: 'string', default: DEMO_APP },
      'client-secret': { type: 'string' },
      'ca-dir': { type: 'string' },
      domain: { type: 'string', default: 'contoso.example' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    console.log(HELP)
    return
  }
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: not a port number: ${values.port}`)

  const domain = values.domain
  const sim = new GraphSimulator({
    port,
    host: values.host,
    tenantId: values.tenant,
    apps: [{ clientId: values['client-id'], ...(values['client-secret'] === undefined ? {} : { clientSecret: values['client-secret'] }) }],
    users: DEMO_USERS.map((u) => ({ id: u.id, displayName: u.displayName, userPrincipalName: `${u.name}@${domain}` })),
  })
  await sim.start()
  for (const user of sim.users) sim.teams(user.id).setAvailable()

  const caDir = values['ca-dir'] === undefined ? await mkdtemp(join(tmpdir(), 'graph-sim-')) : resolve(values['ca-dir'])
  await mkdir(caDir, { recursive: true })
  const caFile = join(caDir, 'ca.pem')
  await writeFile(caFile, sim.caPem)

  const app = sim.apps[0]
  console.log(`Graph simulator listening on ${sim.url}`)
  console.log(`  tenant id      ${sim.tenantId}`)
  console.log(`  authority      ${sim.authority}  (msal knownAuthorities: ${sim.authorityHost})`)
  console.log(`  client id      ${app?.clientId ?? ''}`)
  console.log(`  client secret  ${app?.clientSecret ?? ''}`)
  console.log(`  CA file        ${caFile}`)
  for (const u of sim.users) console.log(`  user           ${u.userPrincipalName}  ${u.id}`)
  console.log('Type "help" for commands.')

  const time = (): string => new Date(sim.now()).toISOString().slice(11, 19)
  const upnOf = (id: string): string => sim.findUser(id)?.userPrincipalName ?? id
  sim.on('setPresence', (e) =>
    console.log(`${time()} relay setPresence ${upnOf(e.userId)} ${e.availability}/${e.activity} for ${e.expirationMs / 60_000} min`),
  )
  sim.on('clearPresence', (e) => console.log(`${time()} relay clearPresence ${upnOf(e.userId)} -> ${e.result}`))
  sim.on('subscription', (e) => console.log(`${time()} subscription ${e.action} ${e.subscriptionId ?? ''} ${e.reason ?? ''}`))
  sim.on('notification', (e) =>
    console.log(`${time()} ${e.kind} notification ${e.outcome} (${e.items.join(', ')}) -> ${e.url} ${e.reason ?? ''}`),
  )
  sim.on('presenceChanged', (e) =>
    console.log(`${time()} ${upnOf(e.userId)}: ${e.previous.availability}/${e.previous.activity} -> ${e.current.availability}/${e.current.activity}`),
  )

  const resolveUser = (arg: string | undefined): string | undefined => {
    if (arg === undefined) return undefined
    return (sim.findUser(arg) ?? sim.findUser(`${arg}@${domain}`))?.id
  }
  const show = (userId: string): void => {
    const p = sim.getPresence(userId)
    const teams = sim.getTeamsSession(userId)
    const sessions = sim.apps
      .map((a) => ({ app: a.clientId, s: sim.getSession(userId, a.clientId) }))
      .filter((x) => x.s !== undefined)
      .map((x) => `app ${x.app}: ${x.s?.effective.availability}/${x.s?.effective.activity} until ${new Date(x.s?.expiresAt ?? 0).toISOString().slice(11, 19)}`)
    console.log(`${upnOf(userId)}: ${p.availability}/${p.activity} (seq ${p.sequenceNumber})`)
    console.log(`  teams: ${teams === undefined ? 'signed out' : `${teams.availability}/${teams.activity}`}`)
    for (const s of sessions) console.log(`  ${s}`)
  }
  const teamsActions: Record<string, (c: SimulatedTeamsClient) => void> = {
    call: (c) => c.startCall(),
    conference: (c) => c.startConference(),
    present: (c) => c.startPresenting(),
    meeting: (c) => c.joinCalendarMeeting(),
    focus: (c) => c.setFocusing(),
    dnd: (c) => c.setDnd(),
    reset: (c) => c.resetStatus(),
    end: (c) => c.endActivity(),
    available: (c) => c.setAvailable(),
    signout: (c) => c.signOut(),
  }

  let stopping = false
  const shutdown = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    await sim.stop()
    process.exit(0)
  }
  process.on('SIGINT', () => void shutdown())
  process.on('SIGTERM', () => void shutdown())

  const rl = createInterface({ input: process.stdin })
  for await (const line of rl) {
    const [command = '', arg, arg2] = line.trim().split(/\s+/)
    if (command === '') continue
    const action = teamsActions[command]
    if (action !== undefined) {
      const userId = resolveUser(arg)
      if (userId === undefined) console.log(`unknown user: ${arg ?? '(none)'}`)
      else {
        action(sim.teams(userId))
        show(userId)
      }
      continue
    }
    switch (command) {
      case 'show': {
        const userId = resolveUser(arg)
        if (arg !== undefined && userId === undefined) console.log(`unknown user: ${arg}`)
        else for (const u of userId === undefined ? sim.users : [{ id: userId }]) show(u.id)
        break
      }
      case 'advance': {
        const minutes = Number(arg)
        if (!(minutes >= 0)) console.log('usage: advance <minutes>')
        else {
          sim.advance(minutes * 60_000)
          console.log(`simulated time is now ${new Date(sim.now()).toISOString()}`)
        }
        break
      }
      case 'throttle':
        sim.faults.throttleNext(Number(arg ?? 1) || 1, Number(arg2 ?? 1) || 1)
        console.log('ok')
        break
      case 'fail':
        sim.faults.failNext(Number(arg ?? 1) || 1, Number(arg2 ?? 503) || 503)
        console.log('ok')
        break
      case 'codes':
        for (const c of sim.pendingDeviceCodes()) console.log(`${c.userCode}  app ${c.clientId}  scopes ${c.scopes.join(' ')}`)
        break
      case 'approve':
      case 'decline':
      case 'reauth':
        try {
          if (command === 'approve') sim.approveDeviceCode(arg ?? '', resolveUser(arg2) ?? arg2 ?? '')
          else if (command === 'decline') sim.declineDeviceCode(arg ?? '')
          else sim.requestReauthorization(arg ?? '')
          console.log('ok')
        } catch (err) {
          console.log((err as Error).message)
        }
        break
      case 'subs':
        for (const s of sim.getSubscriptions()) {
          console.log(`${s.id}  ${s.userIds.length} users  until ${new Date(s.expiresAt).toISOString()}  -> ${s.notificationUrl}`)
        }
        break
      case 'help':
        console.log(HELP)
        break
      case 'quit':
      case 'exit':
        await shutdown()
        return
      default:
        console.log(`unknown command: ${command} (try "help")`)
    }
  }
  await shutdown()
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err)
  process.exit(1)
})
