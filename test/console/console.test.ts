/**
 * The cloud console in Chromium against the whole product in secure mode (scripts/stack.ts, `secure: {}`): the
 * relay serves the console and its API over HTTPS with a certificate from its own CA, which the browser does not
 * trust, so the browser contexts here set ignoreHTTPSErrors for that reason only.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import type { Page } from 'playwright-core'
import { buildWeb } from '../../scripts/build-web.js'
import { Stack } from '../../scripts/stack.js'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import type { RelayConfig } from '../../cloud-relay/src/config/schema.js'
import { systemClock } from '#kernel/clock.js'
import { EnrollmentClient } from '../../gateway/src/identity/enrollment-client.js'
import { IdentityStore } from '../../gateway/src/identity/identity-store.js'
import { launchBrowser, newContext, screenshot } from '../helpers/browser.js'
import { eventually } from '../helpers/eventually.js'

/** A second tenant, so a tenant admin's view can be shown to leave the other tenant out. */
class TwoTenantStack extends Stack {
  override relayConfig(): RelayConfig {
    const config = super.relayConfig()
    return parseRelayConfig({ ...config, tenants: [...config.tenants, { id: 'fabrikam', name: 'Fabrikam', gateways: [] }] })
  }
}

const PHONE = { width: 390, height: 844 }
/** The Accounts test changes the operator's password; the tests after it sign in with the new one. */
const OPERATOR = { username: 'ops', password: 'correct horse battery' }
const TENANT_ADMIN = { username: 'contoso-admin', password: 'contoso admin pass' }

async function shoot(page: Page, name: string): Promise<void> {
  await page.waitForLoadState('networkidle')
  await screenshot(page, name)
}

// A whole product plus a browser, on a shared CI machine: more than the default two minutes.
t.setTimeout(240_000)

t.test('the cloud console: first run, fleet, enrollment, live timeline, roles, accounts, keyboard', async (t) => {
  const reports = await buildWeb(join('dist', 'web-test-console')) // its own folder: other tests build in parallel
  t.comment(`console app.js ${(reports.find((r) => r.name === 'console')!.jsGzipBytes / 1024).toFixed(1)} KiB gzipped`)
  const dataDir = await mkdtemp(join(tmpdir(), 'console-'))
  const logger = pino({ level: 'silent' })
  const stack = new TwoTenantStack({ dataDir, logger, secure: {}, consoleDir: join('dist', 'web-test-console', 'console'), gatewayOverrides: { telemetryIntervalS: 1 } })
  t.teardown(async () => {
    await stack.stop()
    await rm(dataDir, { recursive: true, force: true })
  })
  await stack.startSimulators()
  const relay = await stack.startRelay()
  const base = `https://127.0.0.1:${relay.httpPort}`

  const browser = await launchBrowser()
  t.teardown(() => browser.close())
  // The relay's HTTPS certificate comes from its own CA (secure mode): the only reason for ignoreHTTPSErrors.
  const context = await newContext(browser, { ignoreHTTPSErrors: true })
  const page = await context.newPage()

  await t.test('first visit creates the first operator with the setup secret, by keyboard only', async (t) => {
    const setupSecret = relay.consoleSetupSecret
    t.ok(setupSecret, 'the fresh relay has a setup secret (printed in its log)')
    await page.goto(`${base}/console/`)
    await page.getByRole('heading', { name: 'Create the first administrator' }).waitFor()
    t.match(await page.getByText(/printed it in its log/).textContent(), /console-setup-secret/, 'the page says where to find the secret')
    await shoot(page, 'console-first-run-1280')
    await page.getByLabel('Setup secret').focus()
    await page.keyboard.type('not-the-secret')
    await page.keyboard.press('Tab')
    await page.keyboard.type(OPERATOR.username)
    await page.keyboard.press('Tab')
    await page.keyboard.type(OPERATOR.password)
    await page.keyboard.press('Tab')
    await page.keyboard.type('something else entirely')
    await page.keyboard.press('Enter')
    const mismatch = page.getByText('The two passwords differ')
    await mismatch.waitFor()
    t.equal(await page.getByLabel('Repeat the password').getAttribute('aria-invalid'), 'true', 'the field is marked invalid')
    t.match(await page.getByLabel('Repeat the password').getAttribute('aria-describedby'), /err/, 'the error is tied to the field')
    await page.getByLabel('Repeat the password').fill(OPERATOR.password)
    await page.getByLabel('Repeat the password').press('Enter')
    const wrong = page.getByRole('alert').filter({ hasText: 'not the setup secret' })
    await wrong.waitFor()
    t.match(await wrong.textContent(), /log/, 'a wrong secret is refused, in words that say where the right one is')
    await page.getByLabel('Setup secret').fill('')
    await page.getByLabel('Setup secret').press('Enter')
    await page.getByText('Enter the setup secret from the relay\'s log.').waitFor()
    t.equal(await page.getByLabel('Setup secret').getAttribute('aria-invalid'), 'true', 'a missing secret is refused at the field')
    await shoot(page, 'console-first-run-error-1280')
    await page.getByLabel('Setup secret').fill(setupSecret ?? '')
    await page.getByLabel('Setup secret').press('Enter')
    await page.getByRole('heading', { name: 'Gateways' }).waitFor()
    t.equal(relay.consoleSetupSecret, undefined, 'the setup secret is used up')
    const cookies = await context.cookies()
    const session = cookies.find((c) => c.name === 'pbx_console')
    t.match(session, { httpOnly: true, secure: true, sameSite: 'Strict' }, 'the session cookie is httpOnly, Secure and SameSite=Strict')
    const again = await page.evaluate(async () => (await fetch('/api/v1/console/first-run', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'x', password: 'yyyyyyyyyyyy' }) })).status)
    t.equal(again, 409, 'a second first-run is refused')
    const noCsrf = await page.evaluate(async () => (await fetch('/api/v1/tenants/contoso/gateways', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status)
    t.equal(noCsrf, 403, 'a change without the CSRF header is refused')
    const openapi = await page.evaluate(async () => (await fetch('/api/openapi.json')).json() as Promise<{ paths: Record<string, unknown> }>)
    t.ok(openapi.paths['/api/v1/console/login'] && openapi.paths['/api/v1/gateways'], 'the OpenAPI document lists the /api/v1 routes')
  })

  let code = ''
  await t.test('an enrollment code made in the console enrolls the box, which shows Online live', async (t) => {
    await page.getByLabel('Gateway id (optional)').fill(stack.gatewayId)
    await page.getByLabel('Name (optional)').fill('Head office')
    await page.getByRole('button', { name: 'Create gateway and code' }).click()
    code = (await page.getByTestId('enrollment-code').textContent()) ?? ''
    t.match(code, /^[A-Z0-9]{4}(-[A-Z0-9]{4}){3}$/, 'the code is shown')
    const pin = (await page.getByTestId('ca-pin').textContent()) ?? ''
    t.equal(pin, relay.pki.caFingerprint256, 'the CA pin for the installer')
    t.equal(await page.getByTestId('enroll-url').textContent(), base, 'the relay address for the installer')
    await shoot(page, 'console-enrollment-code-1280')
    // The installer types the code and the pin into the box: the box enrolls with them.
    const client = new EnrollmentClient({ store: new IdentityStore(join(dataDir, 'gateway')), clock: systemClock, logger }, { relayUrl: stack.enrollUrl, caFingerprint: pin })
    await client.enroll({ code })
    await stack.startGateway()
    const row = page.locator(`tr[data-gateway="${stack.gatewayId}"]`)
    await row.getByText(/Online|Connected/).waitFor({ timeout: 20_000 })
    t.pass('the gateway appears connected without a reload')
  })

  await t.test('a simulated call appears in the person\'s timeline live, and the gateway is Online', async (t) => {
    await page.getByRole('link', { name: 'People' }).click()
    const alice = page.getByRole('row', { name: /Alice Adams/ })
    await alice.waitFor({ timeout: 15_000 })
    await shoot(page, 'console-people-1280')
    await alice.getByRole('link', { name: /Why\? \/ timeline/ }).click()
    await page.getByRole('heading', { name: /Why is Alice Adams shown like this/ }).waitFor()
    const before = await page.getByTestId('timeline').locator('li').count().catch(() => 0)
    const call = stack.pbx.incomingCall('201')
    stack.pbx.answer(call)
    await page.getByTestId('timeline').getByText(/201/).first().waitFor({ timeout: 20_000 })
    // Read through evaluate: waitForFunction with a string polls with eval, which the console's CSP refuses.
    await eventually(async () => (await page.evaluate<number>('document.querySelectorAll(\'[data-testid="timeline"] li\').length')) > before || undefined, 'a new line in the timeline', 20_000)
    t.pass('the call shows up in the timeline without a reload')
    await page.getByTestId('why-summary').getByText(/DND|Do not disturb|DoNotDisturb|busy/i).first().waitFor({ timeout: 20_000 })
    await shoot(page, 'console-person-timeline-1280')
    stack.pbx.hangup(call)
    await page.getByRole('link', { name: 'Gateways' }).click()
    await page.locator(`tr[data-gateway="${stack.gatewayId}"]`).getByText('Online').waitFor({ timeout: 30_000 })
    t.pass('the console shows the box Online')
    await shoot(page, 'console-gateways-1280')
    await page.getByRole('link', { name: stack.gatewayId }).click()
    await page.getByRole('heading', { name: 'Telemetry (last 6 hours)' }).waitFor()
    await page.getByText(/^Event rate: [\d.]+ events\/min now$/).waitFor({ timeout: 20_000 })
    await page.getByText(/^CPU: [\d.]+ % now$/).waitFor()
    t.pass('the telemetry charts fill in live')
    await shoot(page, 'console-gateway-detail-1280')
    for (const [link, heading, name] of [['Event log', 'Event log', 'console-events-1280'], ['Graph', 'Microsoft Graph', 'console-graph-1280'], ['Accounts', 'Console accounts', 'console-accounts-1280']] as const) {
      await page.getByRole('link', { name: link, exact: true }).click()
      await page.getByRole('heading', { name: heading, exact: true }).waitFor()
      await shoot(page, name)
    }
  })

  await t.test('keyboard: Tab reaches the navigation and Enter opens a page', async (t) => {
    await page.goto(`${base}/console/#/gateways`)
    await page.getByRole('heading', { name: 'Gateways' }).waitFor()
    // Start at the top of the page (the skip link), as a keyboard user arriving on it does. The page moves focus to
    // its heading once its data has loaded; if that happens while we tab, start again from the top.
    let reached = false
    for (let attempt = 0; attempt < 5 && !reached; attempt++) {
      await page.evaluate("document.querySelector('.skip').focus()")
      for (let i = 0; i < 10 && !reached; i++) {
        await page.keyboard.press('Tab')
        reached = await page.evaluate<boolean>("document.activeElement?.textContent === 'Event log'")
      }
    }
    t.ok(reached, 'Tab reaches the Event log link')
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { name: 'Event log', exact: true }).waitFor()
    // The page moves focus once it has rendered, a moment after the heading appears.
    const focused = await eventually(async () => (await page.evaluate<string>('document.activeElement?.id')) === 'page-title' || undefined, 'focus on the new page\'s heading', 5_000).catch(() => false)
    t.equal(focused, true, 'focus moves to the new page\'s heading')
    t.equal(await page.evaluate<string>('location.hash'), '#/events')
  })

  await t.test('phone-sized screenshots of each main page', async () => {
    const phone = await browser.newContext({ viewport: PHONE, ignoreHTTPSErrors: true, storageState: await context.storageState() })
    const p = await phone.newPage()
    for (const [hash, heading, name] of [['#/gateways', 'Gateways', 'console-gateways-390'], [`#/gateways/${stack.gatewayId}`, `Gateway ${stack.gatewayId}`, 'console-gateway-detail-390'], ['#/people', 'People', 'console-people-390'], ['#/people/1', /Why is/, 'console-person-timeline-390'], ['#/events', 'Event log', 'console-events-390'], ['#/graph', 'Microsoft Graph', 'console-graph-390'], ['#/accounts', 'Console accounts', 'console-accounts-390']] as const) {
      await p.goto(`${base}/console/${hash}`)
      await p.getByRole('heading', { name: heading, exact: typeof heading === 'string' }).first().waitFor()
      await shoot(p, name)
    }
    await phone.close()
  })

  await t.test('a tenant admin sees only its tenant', async (t) => {
    // An operator's gateway in the other tenant.
    const csrf = await page.evaluate(async () => ((await (await fetch('/api/v1/console/session')).json()) as { csrfToken: string }).csrfToken)
    const created = await page.evaluate(async (token) => (await fetch('/api/v1/tenants/fabrikam/gateways', { method: 'POST', headers: { 'content-type': 'application/json', 'x-csrf-token': token }, body: JSON.stringify({ id: 'gw-fabrikam' }) })).status, csrf)
    t.equal(created, 201, 'the operator created a Fabrikam gateway')
    await page.goto(`${base}/console/#/accounts`)
    await page.getByRole('heading', { name: 'Console accounts' }).waitFor()
    await page.getByLabel('Username').fill(TENANT_ADMIN.username)
    await page.getByLabel('Password', { exact: true }).fill(TENANT_ADMIN.password)
    await page.getByLabel('Role').selectOption('tenant-admin')
    await page.getByLabel('Tenant', { exact: true }).selectOption('contoso')
    await page.getByRole('button', { name: 'Create account' }).click()
    await page.getByText(`Account ${TENANT_ADMIN.username} created`).waitFor()
    await page.getByRole('button', { name: 'Sign out' }).click()

    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await page.getByLabel('Username').fill(TENANT_ADMIN.username)
    await page.getByLabel('Password').fill('not the password')
    await page.getByRole('button', { name: 'Sign in' }).click()
    const wrong = page.getByRole('alert').filter({ hasText: 'The username or password is wrong' })
    await wrong.waitFor()
    t.match(await wrong.textContent(), /try again/, 'a wrong password says what to do')
    await shoot(page, 'console-sign-in-error-1280')
    await page.getByLabel('Password').fill(TENANT_ADMIN.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    // Back on the page it signed out from (#/accounts), which a tenant admin sees as its own account page.
    await page.getByRole('heading', { name: 'Your account' }).waitFor()
    await page.getByRole('link', { name: 'Gateways' }).click()
    await page.locator(`tr[data-gateway="${stack.gatewayId}"]`).waitFor()
    t.equal(await page.locator('tr[data-gateway="gw-fabrikam"]').count(), 0, 'the other tenant\'s gateway is not listed')
    t.equal(await page.getByRole('link', { name: 'Accounts' }).count(), 0, 'no accounts page for a tenant admin')
    const status = await page.evaluate(async () => [
      (await fetch('/api/v1/gateways/gw-fabrikam')).status,
      (await fetch('/api/v1/events?tenant=fabrikam')).status,
      (await fetch('/api/v1/console/accounts')).status,
      (await fetch('/api/v1/gateways')).ok,
    ])
    t.same(status, [403, 403, 403, true], 'the API refuses the other tenant and operator routes')
    const listed = await page.evaluate(async () => ((await (await fetch('/api/v1/gateways')).json()) as { gateways: Array<{ id: string }> }).gateways.map((g) => g.id))
    t.same(listed, [stack.gatewayId], 'the gateway list holds only its tenant\'s')
    await page.getByRole('button', { name: 'Sign out' }).click()
  })

  await t.test('an operator manages accounts and its own password on the Accounts page, by keyboard', async (t) => {
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await page.getByLabel('Username').fill(OPERATOR.username)
    await page.getByLabel('Password').fill(OPERATOR.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('button', { name: 'Sign out' }).waitFor()
    await page.goto(`${base}/console/#/accounts`)
    await page.getByRole('heading', { name: 'Console accounts' }).waitFor()
    const adminRow = page.locator(`tr[data-account="${TENANT_ADMIN.username}"]`)
    await page.getByRole('button', { name: `Disable ${TENANT_ADMIN.username}` }).focus()
    await page.keyboard.press('Enter')
    await page.getByText(`Account ${TENANT_ADMIN.username} disabled`).waitFor()
    await adminRow.getByText('Disabled', { exact: true }).waitFor()
    t.pass('the tenant admin is disabled with the keyboard')
    await page.getByRole('button', { name: `Disable ${OPERATOR.username}` }).click()
    const last = page.getByRole('alert').filter({ hasText: 'last enabled operator' })
    await last.waitFor()
    t.match(await last.textContent(), /create or enable another operator first/, 'the last operator cannot be disabled, said in words')
    await page.getByRole('button', { name: `Enable ${TENANT_ADMIN.username}` }).click()
    await adminRow.getByText('Enabled', { exact: true }).waitFor()
    await page.getByLabel('Current password').fill('not my password')
    await page.getByLabel('New password', { exact: true }).fill('short')
    await page.getByLabel('Repeat the new password').fill('short')
    await page.getByRole('button', { name: 'Change password' }).click()
    await page.getByText('Choose a new password of at least 10 characters.').waitFor()
    await page.getByLabel('New password', { exact: true }).fill('a new operator password')
    await page.getByLabel('Repeat the new password').fill('a new operator password')
    await page.getByLabel('Repeat the new password').press('Enter')
    const wrongCurrent = page.getByRole('alert').filter({ hasText: 'The current password is wrong' })
    await wrongCurrent.waitFor()
    t.pass('a wrong current password is refused in words')
    await page.getByLabel('Current password').fill(OPERATOR.password)
    await page.getByLabel('Current password').press('Enter')
    await page.getByText('Password changed.').waitFor()
    await shoot(page, 'console-accounts-manage-1280')
    OPERATOR.password = 'a new operator password'
    await page.getByRole('button', { name: 'Sign out' }).click()
  })

  await t.test('sign-in is paused after 5 failed attempts from one address', async (t) => {
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await page.getByLabel('Username').fill(OPERATOR.username)
    // The tenant admin's wrong password above still counts for this address: the pause may come a try earlier.
    for (let i = 0; i < 5; i++) {
      await page.getByLabel('Password').fill(`wrong ${i}`)
      await page.getByRole('button', { name: 'Sign in' }).click()
      const answer = page.getByRole('alert').filter({ hasText: /wrong|Too many/ })
      await answer.waitFor()
      if (/Too many/.test((await answer.textContent()) ?? '')) break
    }
    await page.getByLabel('Password').fill(OPERATOR.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    const limited = page.getByRole('alert').filter({ hasText: 'Too many failed sign-ins' })
    await limited.waitFor()
    t.match(await limited.textContent(), /wait \d+ minute/, 'says how long to wait')
  })
})
