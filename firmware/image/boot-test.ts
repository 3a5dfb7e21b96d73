/**
 * Boots the built VM image in QEMU (TCG, OVMF) and checks it from the host as an installer would meet it: the
 * setup page over HTTPS, the setup code on the serial console, the first password set with that code, enrolment
 * against a relay and a connector to the OSBiz simulator (both on the host), a call reaching the Graph simulator
 * through the VM, the box's memory with 500 endpoints; after a reboot on the same disk the password, identity,
 * connector and queued outbox are still there, and a factory reset wipes them.
 *
 * The disk is a throw-away qcow2 overlay on the built image; the guest's network is QEMU user mode with
 * restrict=on (it reaches nothing but the forwarded ports).
 */
import { existsSync } from 'node:fs'
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { DEMO_PEOPLE, Stack, type DemoPerson } from '../../scripts/stack.js'
import { FaultProxy } from '../../test/helpers/fault-proxy.js'
import { PI_IMAGE_BASENAME, VM_IMAGE_BASENAME } from './layout.js'
import { piMachine } from './boot-test-pi.js'
import { api, CheckFailure, CheckList, freePort, guestJournal, HOST_IN_GUEST, monitorCommand, OVMF_CODE, OVMF_VARS, peerFingerprint, powerDown, SETUP_CODE, shutDown, sleep, startVm, until, vmMachine, waitForSerial, waitForSetupPage, type GuestForwards, type Vm } from './qemu-harness.js'
import { mib, missingPackages, Progress, run, StepFailure } from './steps.js'

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')

const HELP = `npm run image:test [-- options]

Boots dist/images/${VM_IMAGE_BASENAME}.qcow2 in qemu-system-x86_64 (TCG, q35, OVMF, 1 GiB, 2 CPUs)
on a throw-away overlay and checks, each with its time:
  1. the setup page answers over HTTPS (forwarded from 127.0.0.1)
  2. the serial console shows the setup URL, the setup code and the console screen with the
     certificate fingerprint the setup page serves
  3. the admin password can be set with that code (POST /api/setup); the box enrols against a
     relay on the host and gets an OSBiz connector to the simulator on the host (guestfwd to
     10.0.2.100); a call on the simulator reaches the Graph simulator through the VM
  5. the gateway's RSS and the guest's memory in use with --endpoints monitored (GET /api/status)
  4. with the relay stopped a PBX change queues in the box; after a power-down and a new boot
     on the same disk the password still signs in, the setup code is used up, the box is still
     enrolled with its connector, and the queued change reaches Teams once the relay is back;
     a factory reset then shows a new setup code and leaves no identity and no connector
Exits 1 naming the failed check and the serial log.

  --target vm|pi      vm (default), or the Raspberry Pi image dist/images/${PI_IMAGE_BASENAME}.img in
                      qemu-system-aarch64 -M virt -cpu cortex-a72 with the kernel, initrd and
                      cmdline.txt of its boot partition (serial console ttyAMA0); same checks
  --image FILE        the image (default dist/images/${VM_IMAGE_BASENAME}.qcow2, else .raw)
  --boot-timeout S    seconds to wait for the setup page per boot (default 600: TCG on a
                      busy 2-core host is slow; the time each boot took is printed)
  --endpoints N       users on the OSBiz simulator and in the connector (default 500)
  --no-teams          leave out the calls reaching the Graph simulator (3c, and the queued call
                      in 4b, which also cuts the box off the PBX during boot 2): quicker, proves less
  --teams             the default, kept for older command lines
  --keep              keep the work directory (overlay, serial logs)
  --help              this text

Needs: qemu-system-x86_64 (qemu-system-x86), qemu-img (qemu-utils), OVMF (ovmf), socat (the guest's
forwards to the host's relay and PBX simulator).
`

const PASSWORD = 'boot-test admin password 7'
const GATEWAY_ID = 'gw-boot-test'
const CONNECTOR_ID = 'osbiz-main'
/** 500 people: the three demo people first (alice is 201), then made-up ones, each with a Teams account. */
function monitoredPeople(count: number): DemoPerson[] {
  return Array.from({ length: count }, (_, i) => DEMO_PEOPLE[i] ?? { extension: String(201 + i), name: `Person ${i + 1}`, email: `person${i + 1}@contoso.example` })
}

interface Status {
  tunnel: { gatewayId: string; enrolled: boolean; connected: boolean; transportUrl?: string; lastError?: string }
  links: Array<{ connectorId: string; state: string; endpoints: number; reason?: string }>
  events: Array<{ endpointId: string; state: string }>
  memory?: { rssBytes: number; systemUsedBytes: number; systemTotalBytes: number }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      image: { type: 'string' },
      target: { type: 'string', default: 'vm' },
      'boot-timeout': { type: 'string', default: '600' },
      keep: { type: 'boolean', default: false },
      endpoints: { type: 'string', default: '500' },
      teams: { type: 'boolean', default: true },
      'no-teams': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  if (values['no-teams']) values.teams = false
  const endpointCount = Number(values.endpoints)
  if (!Number.isInteger(endpointCount) || endpointCount < 3 || endpointCount > 20000) throw new StepFailure(`--endpoints takes a number from 3 to 20000 (got "${values.endpoints}")`)
  const bootTimeoutS = Number(values['boot-timeout'])
  if (!Number.isFinite(bootTimeoutS) || bootTimeoutS <= 0) throw new StepFailure(`--boot-timeout takes seconds (got "${values['boot-timeout']}")`)
  if (values.target !== 'vm' && values.target !== 'pi') throw new StepFailure(`--target must be vm or pi (got "${values.target}")`)
  const pi = values.target === 'pi'
  const images = join(REPO, 'dist', 'images')
  const image = resolve(values.image ?? (pi ? join(images, `${PI_IMAGE_BASENAME}.img`) : undefined) ?? [join(images, `${VM_IMAGE_BASENAME}.qcow2`), join(images, `${VM_IMAGE_BASENAME}.raw`)].find((f) => existsSync(f)) ?? join(images, `${VM_IMAGE_BASENAME}.qcow2`))
  if (!existsSync(image)) throw new StepFailure(`no image at ${image}: build it first with npm run image -- --target ${values.target}`)
  if (!pi) for (const file of [OVMF_CODE, OVMF_VARS]) if (!existsSync(file)) throw new StepFailure(`${file} is missing: apt-get install -y ovmf`)
  // socat: the guest reaches the host's relay and PBX simulator through it.
  const missing = missingPackages([pi ? ['qemu-system-aarch64', 'qemu-system-arm'] : ['qemu-system-x86_64', 'qemu-system-x86'], ['qemu-img', 'qemu-utils'], ['socat', 'socat'], ...(pi ? [['mcopy', 'mtools'] as const] : [])])
  if (missing.length) throw new StepFailure(`missing tools; install them with: apt-get install -y ${missing.join(' ')}`)

  const work = await mkdtemp(join(tmpdir(), 'pbxgw-boot-test-'))
  const progress = new Progress()
  const overlay = join(work, 'overlay.qcow2')
  const vars = join(work, 'OVMF_VARS.fd')
  if (!pi) await copyFile(OVMF_VARS, vars)
  const machine = pi ? await piMachine(image, work) : vmMachine(vars)
  if (pi) progress.line(`Pi image in ${machine.binary} -M virt: kernel, initrd and cmdline.txt from its boot partition; -append ${machine.args.at(-1) ?? ''}`)
  // 4 GiB: larger than the image, so the first boot grows the data partition into the rest.
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', /\.(raw|img)$/.test(image) ? 'raw' : 'qcow2', '-b', image, overlay, '4G'])
  const port = await freePort()
  progress.line(`host load average ${loadavg().map((l) => l.toFixed(1)).join(' ')} on ${cpus().length} CPUs (TCG boot times depend on it)`)
  progress.line(`image ${image}; overlay, serial logs and OVMF variables in ${work}; setup page forwarded to https://127.0.0.1:${port}/`)

  // The product around the box, on the host: OSBiz simulator, Graph simulator, relay with its embedded broker.
  // Fixed ports, because QEMU's guest forwards are set when it starts; the relay's certificates also name the
  // address the guest dials, so the box checks them in full (no TLS shortcut for the test).
  const stackStart = performance.now()
  // The relay's and simulators' log: why the host side refused or dropped something the box sent.
  const stackLog = join(work, 'host-stack.log')
  const ports = { mqtts: await freePort(), wss: await freePort(), https: await freePort() }
  const stack = new Stack({
    dataDir: join(work, 'stack'), logger: pino({ level: 'info' }, pino.destination({ dest: stackLog, sync: false })), people: monitoredPeople(endpointCount), gatewayId: GATEWAY_ID,
    secure: { mqttsPort: ports.mqtts, wssPort: ports.wss, httpsPort: ports.https, publicHosts: [HOST_IN_GUEST], brokerUrls: [`mqtts://${HOST_IN_GUEST}:${ports.mqtts}`] },
  })
  await stack.startSimulators()
  const relay = await stack.startRelay()
  const relayPin = relay.pki.caFingerprint256
  const { code: enrollCode } = await relay.enrollment.createGateway('contoso', { id: GATEWAY_ID, name: 'Boot test VM' })
  // The PBX through a proxy the test can cut: in 4a/4b the PBX is unreachable during boot 2, so the box cannot
  // replace the queued change by a fresh look at the PBX, and what reaches Teams can only come out of the outbox.
  const pbxLink = await FaultProxy.start({ port: stack.pbx.port })
  const forwards: GuestForwards = [ports.https, ports.mqtts, pbxLink.port]
  const enrollUrl = `https://${HOST_IN_GUEST}:${ports.https}`
  progress.line(`host stack in ${((performance.now() - stackStart) / 1000).toFixed(1)} s: OSBiz simulator (${endpointCount} users) at ${HOST_IN_GUEST}:${pbxLink.port}, relay ${enrollUrl} and mqtts://${HOST_IN_GUEST}:${ports.mqtts} for the guest`)
  const aliceSession = () => stack.graph.getSession(stack.people[0]!.email, stack.graphClient.clientId)
  const bobSession = () => stack.graph.getSession(stack.people[1]!.email, stack.graphClient.clientId)

  let vm: Vm | undefined
  let failed = false
  const checks = new CheckList(progress, () => vm?.serialLog)
  const check = <T>(name: string, work: () => Promise<T>): Promise<T> => checks.check(name, work)
  try {
    const bootStart = performance.now()
    vm = startVm(work, overlay, machine, port, 1, forwards)
    const first = vm
    const session = await check('1. boot 1: setup page answers over HTTPS', async () => {
      const answer = await waitForSetupPage(first, port, bootTimeoutS)
      if (answer.body.passwordSet !== false) throw new CheckFailure(`a new box must have no password yet, /api/session says ${JSON.stringify(answer.body)}`)
      return answer
    })
    progress.line(`  boot to setup page: ${((performance.now() - bootStart) / 1000).toFixed(1)} s (target <= 45 s under TCG)`)
    const fingerprint = await peerFingerprint(port)
    if (session.body.certificateFingerprint !== fingerprint) {
      await check('1b. the page shows the fingerprint of the certificate it serves', async () => {
        throw new CheckFailure(`the page says ${String(session.body.certificateFingerprint)}, the TLS connection got ${fingerprint}`)
      })
    }
    const code = await check('2. serial console shows the setup URL, the certificate fingerprint and the setup code', async () => {
      // On the Pi the code reaches the serial port only with the console screen, when agetty redraws (slower under TCG).
      const match = await waitForSerial(first.serialLog, SETUP_CODE, pi ? 180 : 30)
      const text = await readFile(first.serialLog, 'utf8')
      const urls = [...text.matchAll(/(https:\/\/[^\s/]+\/)/g)].map((m) => m[1])
      if (urls.length === 0) throw new CheckFailure('the setup code is there but no setup URL next to it')
      progress.line(`  console: setup code ${match[1]}, URLs ${[...new Set(urls)].join(' ')}`)
      // The console screen (the gateway's issue file, redrawn by agetty): the fingerprint in two lines of 16 bytes.
      const screen = await waitForSerial(first.serialLog, /fingerprint is this one:\s*\r?\n\s*([0-9A-F:]{47})\s*\r?\n\s*([0-9A-F:]{47})/, 60)
        .catch(() => { throw new CheckFailure('the console screen with the certificate fingerprint never appeared on the serial console') })
      const shown = `${screen[1]}:${screen[2]}`
      if (shown !== fingerprint) throw new CheckFailure(`the console screen shows fingerprint ${shown}, the setup page serves ${fingerprint}`)
      const mdns = /https:\/\/(pbxgw-[0-9a-f]{4})\.local\//.exec(await readFile(first.serialLog, 'utf8'))
      if (!mdns) throw new CheckFailure('the console screen does not name the box\'s https://pbxgw-XXXX.local/ address')
      progress.line(`  console screen: ${mdns[0]}, fingerprint ${shown.slice(0, 11)}… matches the served certificate`)
      // What a screen plugged into the box shows (tty1), for the README and for a look when something is off.
      await monitorCommand(first.monitor, `screendump ${join(work, 'screen-boot1.png')} -f png`).catch(() => undefined)
      return match[1] ?? ''
    })
    const admin = await check('3. set the admin password with the setup code', async () => {
      const wrong = await api(port, 'POST', '/api/setup', { password: PASSWORD, setupCode: 'AAAA-AAAA-AAAA' })
      if (wrong.status < 400) throw new CheckFailure(`a wrong setup code was accepted (HTTP ${wrong.status})`)
      const answer = await api(port, 'POST', '/api/setup', { password: PASSWORD, setupCode: code })
      if (answer.status !== 200 || typeof answer.body.csrfToken !== 'string') throw new CheckFailure(`POST /api/setup answered ${answer.status}: ${JSON.stringify(answer.body)}`)
      const after = await api(port, 'GET', '/api/session', undefined, answer.cookie)
      if (after.body.passwordSet !== true || after.body.signedIn !== true) throw new CheckFailure(`after setup /api/session says ${JSON.stringify(after.body)}`)
      return { cookie: answer.cookie, csrf: answer.body.csrfToken }
    })
    const status = async (cookie: string | undefined): Promise<Status> => {
      const answer = await api(port, 'GET', '/api/status', undefined, cookie)
      if (answer.status !== 200) throw new CheckFailure(`GET /api/status answered ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)}`)
      return answer.body as unknown as Status
    }
    await check(`3b. enrol against the host's relay and add an OSBiz connector with ${endpointCount} users: the box monitors them all`, async () => {
      const enrolled = await api(port, 'POST', '/api/enrollment', { code: enrollCode, relayUrl: enrollUrl, caFingerprint: relayPin }, admin.cookie, admin.csrf)
      if (enrolled.status !== 200 || enrolled.body.gatewayId !== GATEWAY_ID) throw new CheckFailure(`POST /api/enrollment answered ${enrolled.status}: ${JSON.stringify(enrolled.body)}`)
      const connector = await api(port, 'PUT', `/api/connectors/${CONNECTOR_ID}`, {
        type: 'osbiz',
        config: { host: HOST_IN_GUEST, port: pbxLink.port, applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret', users: stack.people.map((p) => ({ extension: p.extension, name: p.name, email: p.email })) },
      }, admin.cookie, admin.csrf)
      if (connector.status !== 200) throw new CheckFailure(`PUT /api/connectors/${CONNECTOR_ID} answered ${connector.status}: ${JSON.stringify(connector.body).slice(0, 300)}`)
      const began = performance.now()
      const seen = await until(`the tunnel to the relay and ${endpointCount} monitors on the OSBiz simulator`, 300, async () => {
        const now = await status(admin.cookie)
        return now.tunnel.connected && stack.pbx.monitorCount >= endpointCount && relay.liveness.view(GATEWAY_ID)?.state === 'online' ? now : undefined
      })
      if (values.teams) {
        // The relay maps extensions to people by e-mail when it imports the tenant's users (from the Graph
        // simulator): once the box has reported its PBX directory, as an operator would run the import.
        await until(`the box's PBX directory of ${endpointCount} extensions at the relay`, 120, async () => {
          const report = await relay.directory.mappingReport('contoso')
          return report.endpoints.filter((e) => e.gatewayId === GATEWAY_ID).length >= endpointCount ? true : undefined
        })
        const userImport = await relay.directory.startImport('contoso', { dryRun: false, trigger: 'boot test' })
        const imported = await userImport.done
        if (imported.state !== 'succeeded') throw new CheckFailure(`the relay's user import from the Graph simulator failed: ${JSON.stringify(imported).slice(0, 300)}`)
        const mapped = await until(`the relay to map the ${endpointCount} extensions to people`, 120, async () => {
          const report = await relay.directory.mappingReport('contoso')
          const count = report.endpoints.filter((e) => e.gatewayId === GATEWAY_ID && e.personId !== null).length
          return count >= endpointCount ? count : undefined
        })
        progress.line(`  relay: ${mapped} extensions mapped to people by e-mail`)
      }
      progress.line(`  enrolled as ${GATEWAY_ID} through ${seen.tunnel.transportUrl ?? '?'}; ${stack.pbx.monitorCount} extensions monitored, link ${seen.links.map((l) => `${l.connectorId} ${l.state} (${l.endpoints} endpoints)`).join(', ')}; ${((performance.now() - began) / 1000).toFixed(1)} s after the connector was saved`)
    })
    if (values.teams) await check('3c. a call on the OSBiz simulator reaches the Graph simulator through the VM', async () => {
      if (aliceSession()) throw new CheckFailure(`Teams shows ${stack.people[0]!.email} in a call before any call was made`)
      const began = performance.now()
      const call = stack.pbx.incomingCall(stack.people[0]!.extension)
      stack.pbx.answer(call)
      const session = await until(`a Teams call session for ${stack.people[0]!.email}`, 120, async () => aliceSession())
      progress.line(`  call on ${stack.people[0]!.extension} answered -> Teams ${JSON.stringify(session)} in ${((performance.now() - began) / 1000).toFixed(1)} s`)
    })
    const memory = async (when: string, cookie: string | undefined) => {
      const now = await until('the memory figures in /api/status', 30, async () => (await status(cookie)).memory)
      progress.line(`  ${when}: gateway RSS ${mib(now.rssBytes)} (target <= 100 MB), guest memory in use ${mib(now.systemUsedBytes)} of ${mib(now.systemTotalBytes)}`)
      return now
    }
    await check(`5. memory with ${endpointCount} monitored endpoints (boot 1)`, async () => {
      // A moment for the start-up garbage to be collected, as it would be on a box left running.
      await sleep(10_000)
      await memory(`boot 1, ${endpointCount} endpoints`, admin.cookie)
    })
    const queuedBefore = await check('4a. with the relay down, a PBX change queues in the box\'s outbox', async () => {
      await stack.stopRelay()
      const call = stack.pbx.incomingCall(stack.people[1]!.extension)
      stack.pbx.answer(call)
      await until(`the box to see ${stack.people[1]!.extension} busy and the tunnel down`, 120, async () => {
        const now = await status(admin.cookie)
        return !now.tunnel.connected && now.events.some((e) => e.endpointId === stack.people[1]!.extension && e.state !== 'idle') ? true : undefined
      })
      // The outbox log is written as the event is queued; a breath for the disk before the power button.
      await sleep(3000)
      // The PBX goes away too until 4b has seen the queued change at the relay (see pbxLink).
      if (values.teams) pbxLink.cut()
      return Date.now()
    })
    const downStart = performance.now()
    const how = await powerDown(first, 90)
    progress.line(`  power-down (ACPI): ${how}, ${((performance.now() - downStart) / 1000).toFixed(1)} s`)

    const rebootStart = performance.now()
    vm = startVm(work, overlay, machine, port, 2, forwards)
    const second = vm
    const admin2 = await check('4. boot 2: the password survives, the setup code is used up', async () => {
      const answer = await waitForSetupPage(second, port, bootTimeoutS)
      progress.line(`  boot 2 to setup page: ${((performance.now() - rebootStart) / 1000).toFixed(1)} s`)
      if (answer.body.passwordSet !== true) throw new CheckFailure(`after the reboot the box has no password: ${JSON.stringify(answer.body)}`)
      const login = await api(port, 'POST', '/api/login', { password: PASSWORD })
      if (login.status !== 200) throw new CheckFailure(`sign-in with the password set before the reboot answered ${login.status}: ${JSON.stringify(login.body)}`)
      const again = await api(port, 'POST', '/api/setup', { password: 'someone else entirely', setupCode: code })
      if (again.status < 400) throw new CheckFailure(`the old setup code set a new password after the reboot (HTTP ${again.status})`)
      const fingerprint2 = await peerFingerprint(port)
      if (fingerprint2 !== fingerprint) throw new CheckFailure(`the setup page's certificate changed across the reboot (${fingerprint} -> ${fingerprint2}): the data partition lost it`)
      await sleep(2000)
      const console2 = await readFile(second.serialLog, 'utf8')
      if (SETUP_CODE.test(console2)) throw new CheckFailure('the console still shows a setup code after the password was set')
      return { cookie: login.cookie, csrf: typeof login.body.csrfToken === 'string' ? login.body.csrfToken : undefined }
    })
    await check(`4b. boot 2: still enrolled as the same gateway, the connector is kept, ${values.teams ? 'the queued change reaches Teams once the relay is back' : 'the box reconnects to the restarted relay (the queued change reaching Teams: --teams)'}`, async () => {
      const enrollment = await api(port, 'GET', '/api/enrollment', undefined, admin2.cookie)
      if (enrollment.body.enrolled !== true || enrollment.body.gatewayId !== GATEWAY_ID) throw new CheckFailure(`after the reboot /api/enrollment says ${JSON.stringify(enrollment.body)}`)
      const connectors = await api(port, 'GET', '/api/connectors', undefined, admin2.cookie)
      const kept = (connectors.body.connectors as Array<{ id: string; config?: { users?: unknown[] } }> | undefined)?.find((c) => c.id === CONNECTOR_ID)
      if (!kept) throw new CheckFailure(`after the reboot the connector ${CONNECTOR_ID} is gone: ${JSON.stringify(connectors.body).slice(0, 200)}`)
      if (bobSession()) throw new CheckFailure('Teams already shows the call made while the relay was down: the test cannot tell the outbox delivered it')
      const began = performance.now()
      await stack.startRelay()
      await until('the box to reconnect to the restarted relay', 180, async () => ((await status(admin2.cookie)).tunnel.connected ? true : undefined))
      progress.line(`  relay back: the box reconnected as ${GATEWAY_ID} in ${((performance.now() - began) / 1000).toFixed(1)} s`)
      if (!values.teams) { await memory(`boot 2, ${endpointCount} endpoints`, admin2.cookie); return }
      const session = await until(`the call queued before the reboot to reach Teams (${stack.people[1]!.email})`, 180, async () => bobSession())
      const row = (await stack.relay!.store.listEndpoints()).find((e) => e.gatewayId === GATEWAY_ID && e.endpointId === stack.people[1]!.extension)
      const changedAt = row ? new Date(row.changedAt).getTime() : NaN
      // The relay stores the time the box saw the change: from before the power-down means it came out of the outbox
      // kept on the data partition, not from a fresh look at the PBX after the reboot.
      if (!(changedAt <= queuedBefore)) throw new CheckFailure(`the relay's state of ${stack.people[1]!.extension} is from ${row ? new Date(changedAt).toISOString() : 'nowhere'}, not from before the power-down (${new Date(queuedBefore).toISOString()})`)
      progress.line(`  relay back: queued change (seen by the box at ${new Date(changedAt).toISOString()}, before the reboot) reached Teams ${JSON.stringify(session)} in ${((performance.now() - began) / 1000).toFixed(1)} s`)
      pbxLink.restore()
      // The memory reading below is with every extension monitored again, as in boot 1.
      await until(`the box to reach the PBX again and monitor ${endpointCount} extensions`, 300, async () => (stack.pbx.monitorCount >= endpointCount ? true : undefined))
      await memory(`boot 2, ${endpointCount} endpoints`, admin2.cookie)
    })
    await check('4c. factory reset: a new setup code on the console, not enrolled, no connectors', async () => {
      const reset = await api(port, 'POST', '/api/factory-reset', { confirm: 'RESET' }, admin2.cookie, admin2.csrf)
      if (reset.status !== 200) throw new CheckFailure(`POST /api/factory-reset answered ${reset.status}: ${JSON.stringify(reset.body)}`)
      const fresh = await api(port, 'GET', '/api/session')
      if (fresh.body.passwordSet !== false) throw new CheckFailure(`after the reset /api/session says ${JSON.stringify(fresh.body)}`)
      const newCode = (await until('a new setup code on the serial console', 60, async () => {
        const codes = [...(await readFile(second.serialLog, 'utf8')).matchAll(new RegExp(SETUP_CODE.source, 'g'))].map((m) => m[1])
        return codes.find((c) => c !== code)
      }))
      const setup = await api(port, 'POST', '/api/setup', { password: PASSWORD, setupCode: newCode })
      if (setup.status !== 200) throw new CheckFailure(`the new setup code ${newCode} did not set a password: ${setup.status} ${JSON.stringify(setup.body)}`)
      const enrollment = await api(port, 'GET', '/api/enrollment', undefined, setup.cookie)
      if (enrollment.body.enrolled !== false) throw new CheckFailure(`after the reset the box is still enrolled: ${JSON.stringify(enrollment.body)}`)
      const connectors = await api(port, 'GET', '/api/connectors', undefined, setup.cookie)
      const left = connectors.body.connectors as unknown[] | undefined
      if (!Array.isArray(left) || left.length !== 0) throw new CheckFailure(`after the reset connectors are left: ${JSON.stringify(connectors.body).slice(0, 200)}`)
      progress.line(`  new setup code ${newCode} on the console; not enrolled; 0 connectors`)
    })
    await powerDown(second, 60)
  } catch (err) {
    failed = true
    if (!(err instanceof CheckFailure)) throw err
  } finally {
    // A clean power-down writes the guest's journal to the data partition, for the diagnosis below.
    await shutDown(vm, 60)
    await stack.stop().catch((err: unknown) => progress.line(`  host stack did not stop cleanly: ${(err as Error).message}`))
    await pbxLink.close()
  }
  const journal = await guestJournal(work, overlay, machine.dataOffsetBytes).catch((err: unknown) => { progress.line(`  guest journal not read: ${(err as Error).message}`); return undefined })
  if (journal && failed) {
    const warnings = await run('journalctl', ['-D', journal, '-p', 'warning', '-o', 'short-monotonic', '--no-pager']).catch(() => '')
    process.stdout.write(`\nGuest journal, warnings and errors (all of it: journalctl -D ${journal}):\n${warnings.split('\n').slice(-40).join('\n')}\n`)
  }
  if (failed) {
    const hostLog = await readFile(stackLog, 'utf8').catch(() => '')
    const problems = hostLog.split('\n').filter((line) => /"level":(40|50|60)/.test(line))
    process.stdout.write(`\nHost stack (relay, simulators), warnings and errors (all of it: ${stackLog}):\n${problems.slice(-30).map((l) => l.slice(0, 400)).join('\n')}\n`)
  }
  if (journal) {
    const startup = await run('journalctl', ['-D', journal, '--no-pager', '-o', 'cat', '--grep', 'Startup finished|setup page listening']).catch(() => '')
    for (const line of startup.split('\n').filter(Boolean)) progress.line(`  guest: ${line.slice(0, 160)}`)
  }
  progress.line(`host load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`)
  process.stdout.write(`\nBoot test of ${image}\n${checks.results.map((r) => `  ${r}`).join('\n')}\n  total ${progress.elapsedS().toFixed(1)} s; serial logs in ${work}${values.keep || failed ? '' : ' (removed)'}\n`)
  if (!values.keep && !failed) await rm(work, { recursive: true, force: true })
  if (failed) process.exit(1)
}

main().catch((err: unknown) => {
  process.stderr.write(`boot test failed: ${err instanceof StepFailure ? err.message : (err as Error).stack ?? String(err)}\n`)
  process.exit(err instanceof StepFailure ? 2 : 1)
})
