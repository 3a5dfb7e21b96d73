/**
 * The console's Mapping page in Chromium against the whole product in secure mode (scripts/stack.ts, `secure: {}`):
 * an extension whose PBX e-mail no Entra user answers to is listed as unmatched, a tenant admin maps it by hand
 * with the keyboard only, a call on it then reaches the person (timeline, Teams DND), and removing the manual
 * mapping returns it to automatic mapping. The relay's HTTPS certificate comes from its own CA, which the browser
 * does not trust: the only reason for ignoreHTTPSErrors.
 */
import { pino } from 'pino'
import t from 'tap'
import type { Page } from 'playwright-core'
import { DEMO_PEOPLE, Stack } from '../../scripts/stack.js'
import { launchBrowser, newContext, screenshot } from '../helpers/browser.js'
import { eventually } from '../helpers/eventually.js'
import { startSecureStack } from './fixtures/secure-stack.js'

/**
 * Carol's second phone (204) carries her old address in the PBX, which no Entra user answers to any more; her desk
 * phone (203) maps automatically to carol@contoso.example.
 */
const DECT = { extension: '204', name: 'Carol DECT', pbxEmail: 'carol.clark@old-pbx.example' }
const CAROL = { name: 'Carol Clark', upn: 'carol@contoso.example' }
const PHONE = { width: 390, height: 844 }
const OPERATOR = { username: 'ops', password: 'correct horse battery' }
const TENANT_ADMIN = { username: 'contoso-admin', password: 'contoso admin pass' }

class MismatchStack extends Stack {
  override async startSimulators(): Promise<void> {
    await super.startSimulators()
    this.graph.removeUser(DECT.pbxEmail) // the Stack made an Entra user of each PBX person: this one is gone
  }
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.waitForLoadState('networkidle')
  await screenshot(page, name)
}

/** A console API call from inside the page (session cookie; the CSRF token on changes). */
async function call(page: Page, method: string, path: string, body?: unknown): Promise<number> {
  return page.evaluate(async ({ method, path, body }) => {
    const session = (await (await fetch('/api/v1/console/session')).json()) as { csrfToken: string | null }
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (session.csrfToken) headers['x-csrf-token'] = session.csrfToken
    return (await fetch(`/api/v1${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) })).status
  }, { method, path, body })
}

/** Tab from the page heading until the focused element matches; fails after `max` presses. */
async function tabTo(page: Page, test: string, max = 40): Promise<boolean> {
  await page.evaluate("document.getElementById('page-title').focus()")
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab')
    if (await page.evaluate<boolean>(test)) return true
  }
  return false
}

t.test('the console maps an unmatched extension by hand and removes the manual mapping', async (t) => {
  const { stack, relay, base } = await startSecureStack(t, 'mapping', (dataDir, consoleDir) => new MismatchStack({
    dataDir, logger: pino({ level: 'silent' }), secure: {}, consoleDir,
    people: [...DEMO_PEOPLE, { extension: DECT.extension, name: DECT.name, email: DECT.pbxEmail }],
  }))
  const endpoint = `${stack.gatewayId}/osbiz-main/${DECT.extension}`

  // The users come from Entra ID: Carol is a person (by 203), but 204's PBX e-mail answers to nobody.
  const run = await relay.directory.startImport('contoso', { dryRun: false, trigger: 'test' })
  t.match(await run.done, { state: 'succeeded' }, 'the user import ran')
  const report = await eventually(async () => {
    const r = await relay.directory.mappingReport('contoso')
    return r.endpoints.length === 4 ? r : undefined
  }, 'the gateway to report its PBX directory', 20_000)
  t.same(report.unmatchedPbx.map((u) => u.endpoint), [endpoint], 'extension 204 does not map automatically')

  const browser = await launchBrowser()
  t.teardown(() => browser.close())
  const context = await newContext(browser, { ignoreHTTPSErrors: true })
  const page = await context.newPage()

  await t.test('an operator reads the mapping report but gets no forms', async (t) => {
    await page.goto(`${base}/console/`)
    await page.getByRole('heading', { name: 'Create the first administrator' }).waitFor()
    t.equal(await call(page, 'POST', '/console/first-run', { ...OPERATOR, setupSecret: relay.consoleSetupSecret }), 201, 'first operator created with the setup secret')
    await page.goto(`${base}/console/#/mapping`)
    await page.reload() // the app read its session before the first-run call above
    await page.getByRole('heading', { name: 'Mapping', exact: true }).waitFor()
    await page.getByTestId('unmatched-pbx').getByText(/Extension 204 \(Carol DECT\) on .* is not mapped: its PBX e-mail carol\.clark@old-pbx\.example belongs to no imported Entra user/).waitFor()
    await page.getByText('Operators see the mapping read-only').waitFor()
    t.equal(await page.getByRole('button', { name: /Map manually|Remove manual mapping/ }).count(), 0, 'no change controls for an operator')
    t.equal(await call(page, 'PUT', '/tenants/contoso/mappings', { gatewayId: stack.gatewayId, connectorId: 'osbiz-main', endpointId: DECT.extension, personId: 1 }), 403, 'and the API refuses an operator\'s change')
    t.equal(await call(page, 'POST', '/console/accounts', { ...TENANT_ADMIN, role: 'tenant-admin', tenantId: 'contoso' }), 201, 'tenant admin created')
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByRole('heading', { name: 'Sign in' }).waitFor()
    await page.getByLabel('Username').fill(TENANT_ADMIN.username)
    await page.getByLabel('Password').fill(TENANT_ADMIN.password)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByRole('button', { name: 'Sign out' }).waitFor()
  })

  const emailField = page.getByLabel(`Person's e-mail for extension ${DECT.extension}`)

  await t.test('the tenant admin sees the report in words and maps extension 204 by keyboard only', async (t) => {
    await page.getByRole('link', { name: 'Mapping', exact: true }).click()
    await page.getByRole('heading', { name: 'Mapping', exact: true }).waitFor()
    await page.getByTestId('unmatched-pbx').getByText(/Extension 204 \(Carol DECT\)/).waitFor()
    await page.getByTestId('mapping-summary').getByText('Every imported Entra user has an extension.').waitFor()
    await page.getByTestId('mapping-summary').getByText('1 extension has no person.').waitFor()

    t.ok(await tabTo(page, `document.activeElement?.labels?.[0]?.textContent === "Person's e-mail for extension ${DECT.extension}"`), 'Tab reaches the e-mail field of extension 204')
    await page.keyboard.type('nobody@contoso.example')
    await page.keyboard.press('Enter')
    const fieldError = page.getByRole('alert').filter({ hasText: 'No person in contoso has the e-mail nobody@contoso.example' })
    await fieldError.waitFor()
    t.match(await fieldError.textContent(), /pick one from the suggestions/, 'the error says what to do')
    t.equal(await emailField.getAttribute('aria-invalid'), 'true', 'the field is marked invalid')
    const errorId = await fieldError.getAttribute('id')
    t.ok(errorId && (await emailField.getAttribute('aria-describedby'))?.split(' ').includes(errorId), 'the error is tied to the field by aria-describedby')
    await shoot(page, 'console-mapping-1280')

    t.equal(await page.evaluate<boolean>(`document.activeElement?.labels?.[0]?.textContent === "Person's e-mail for extension ${DECT.extension}"`), true, 'focus stays in the field')
    await page.keyboard.press('Control+A')
    await page.keyboard.type(CAROL.upn)
    await page.keyboard.press('Enter')
    await page.getByRole('status').filter({ hasText: 'Extension 204 is now mapped by hand to Carol Clark.' }).waitFor()
    await page.getByTestId('manual-mappings').getByText(/Extension 204 \(Carol DECT\) on .* → Carol Clark \(carol@contoso\.example\), set by/).waitFor()
    t.equal(await page.getByTestId('unmatched-pbx').count(), 0, 'no extension is unmatched any more, without a reload')
    t.match(await relay.directory.mappingReport('contoso'), { manual: [{ endpoint }] }, 'the relay holds the manual mapping')
  })

  await t.test('phone-sized screenshot of the Mapping page', async () => {
    const phone = await browser.newContext({ viewport: PHONE, ignoreHTTPSErrors: true, storageState: await context.storageState() })
    const p = await phone.newPage()
    await p.goto(`${base}/console/#/mapping`)
    await p.getByTestId('manual-mappings').waitFor()
    await shoot(p, 'console-mapping-390')
    await phone.close()
  })

  await t.test('the person has extension 204 marked manual, and a call on it reaches her timeline and Teams', async (t) => {
    await page.getByRole('link', { name: 'People', exact: true }).click()
    const carol = page.getByRole('row', { name: /Carol Clark/ })
    await carol.getByText(`204 on ${stack.gatewayId}/osbiz-main (manual)`).waitFor({ timeout: 15_000 })
    t.pass('the People page marks the extension manual')
    await carol.getByRole('link', { name: /Why\? \/ timeline/ }).click()
    await page.getByRole('heading', { name: /Why is Carol Clark shown like this/ }).waitFor()
    const call = stack.pbx.incomingCall(DECT.extension)
    stack.pbx.answer(call)
    await page.getByTestId('timeline').getByText(/204/).first().waitFor({ timeout: 20_000 })
    t.pass('the call on 204 appears in Carol\'s timeline without a reload')
    const session = await eventually(() => stack.graph.getSession(CAROL.upn, stack.graphClient.clientId), 'Teams to show Carol busy', 20_000)
    t.match(session, { availability: 'DoNotDisturb' }, 'and sets DND in Teams for Carol')
    stack.pbx.hangup(call)
  })

  await t.test('removing the manual mapping (keyboard) returns 204 to automatic mapping', async (t) => {
    await page.getByRole('link', { name: 'Mapping', exact: true }).click()
    await page.getByTestId('manual-mappings').waitFor()
    t.ok(await tabTo(page, 'document.activeElement?.textContent?.startsWith("Remove manual mapping") === true'), 'Tab reaches the Remove manual mapping button')
    t.equal(await page.evaluate<string>('document.activeElement.textContent'), 'Remove manual mapping of extension 204', 'the button names its extension')
    await page.keyboard.press('Enter')
    await page.getByRole('status').filter({ hasText: 'The manual mapping of extension 204 is removed: it is mapped automatically again.' }).waitFor()
    await page.getByTestId('unmatched-pbx').getByText(/Extension 204 \(Carol DECT\)/).waitFor()
    t.equal(await page.getByTestId('manual-mappings').count(), 0, 'no manual mapping left')
    const after = await relay.directory.mappingReport('contoso')
    t.same([after.manual, after.unmatchedPbx.map((u) => u.endpoint)], [[], [endpoint]], 'the relay maps 204 automatically again: to nobody')
    await page.getByRole('link', { name: 'People', exact: true }).click()
    const carol = page.getByRole('row', { name: /Carol Clark/ })
    await carol.getByText(`203 on ${stack.gatewayId}/osbiz-main (auto-mapped)`).waitFor()
    t.equal(await carol.getByText(/^204 on/).count(), 0, 'Carol no longer has 204')
  })
  await t.test('an imported Entra user with no extension yet can be the target of a manual mapping', async (t) => {
    stack.graph.addUser({ displayName: 'Dana Diaz', userPrincipalName: 'dana@contoso.example' })
    const run = await relay.directory.startImport('contoso', { dryRun: false, trigger: 'test' })
    await run.done
    await page.getByRole('link', { name: 'People', exact: true }).click()
    await page.getByRole('link', { name: 'Mapping', exact: true }).click()
    await page.getByTestId('unmatched-entra').getByText(/Dana Diaz \(dana@contoso\.example\)/).waitFor()
    await emailField.fill('dana@contoso.example')
    await emailField.press('Enter')
    await page.getByRole('status').filter({ hasText: 'Extension 204 is now mapped by hand to Dana Diaz.' }).waitFor()
    const report = await relay.directory.mappingReport('contoso')
    t.match(report.manual, [{ endpoint }], 'the relay holds the manual mapping to Dana')
    t.notOk(report.unmatchedEntra.some((u) => u.userPrincipalName === 'dana@contoso.example'), 'Dana is no longer an Entra user without an extension')
  })
})
