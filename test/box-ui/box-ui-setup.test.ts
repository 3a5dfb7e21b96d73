import t from 'tap'
import { OsbizSimulator } from '../../gateway/src/adapters/osbiz/simulator/osbiz-simulator.js'
import { screenshot } from '../helpers/browser.js'
import { buildOnce, call, DESKTOP, openBoxPage, PHONE, startBox } from './fixtures/box-harness.js'

const PASSWORD = 'correct horse battery'

t.test('the box UI stays within its JavaScript budget', async (t) => {
  const reports = await buildOnce()
  const box = reports.find((r) => r.name === 'box')
  t.ok(box, 'the box app is built')
  t.notOk(box?.overBudget, `dist/web/box/app.js is ${((box?.jsGzipBytes ?? 0) / 1024).toFixed(1)} KiB gzipped (budget 150 KiB)`)
  t.comment(`box app.js: ${((box?.jsGzipBytes ?? 0) / 1024).toFixed(1)} KiB gzipped`)
})

t.test('first visit, sign-in, CSRF, an OSBiz connector tested and saved, secrets never shown, rate limit', async (t) => {
  const pbx = new OsbizSimulator({
    users: [{ extension: '201', name: 'Alice' }, { extension: '202', name: 'Bob' }, { extension: '203', name: 'Carol' }],
    credentials: { applicationId: 'presence-gateway', username: 'cstauser', password: 'csta-secret' },
  })
  const { port: pbxPort } = await pbx.start()
  t.teardown(() => pbx.stop())
  const box = await startBox()
  t.teardown(() => box.close())
  // First visit: no default password; the page asks for one and shows the certificate fingerprint.
  const page = await openBoxPage(t, box)
  await page.getByRole('heading', { name: /set the admin password/ }).waitFor()
  t.match(await page.locator('.fingerprint').textContent(), box.fingerprint, 'the page shows its certificate fingerprint')
  await screenshot(page, 'box-first-visit-1280')
  await page.setViewportSize(PHONE)
  await screenshot(page, 'box-first-visit-390')
  await page.setViewportSize(DESKTOP)
  // The setup code: only someone with the box in hand can read it (its console); a wrong one is explained on the field.
  await page.getByLabel('Setup code').fill('ABCD-EFGH-JKMN')
  await page.getByLabel('New admin password').fill(PASSWORD)
  await page.getByLabel('Type it again').fill(PASSWORD)
  await page.getByRole('button', { name: /Set password/ }).click()
  const codeError = page.locator('.field', { has: page.getByLabel('Setup code') }).getByRole('alert')
  await codeError.waitFor()
  t.match(await codeError.textContent(), /setup code.*console/is, 'a wrong setup code says where to read the right one')
  t.equal(await page.getByLabel('Setup code').getAttribute('aria-invalid'), 'true', 'the setup code field is marked invalid')
  const codeDescribedBy = await page.getByLabel('Setup code').getAttribute('aria-describedby') ?? ''
  t.match(await page.locator(`#${codeDescribedBy.split(' ').pop() ?? ''}`).textContent(), /setup code/i, 'the message is tied to the field')
  await screenshot(page, 'box-first-visit-wrong-code-1280')
  await page.getByLabel('Setup code').fill(box.setupCode() ?? '')
  await page.getByLabel('New admin password').fill('short')
  await page.getByLabel('Type it again').fill('')
  await page.getByRole('button', { name: /Set password/ }).click()
  t.match(await page.getByRole('alert').first().textContent(), /at least 10 characters/, 'a short password is refused in words')
  t.equal(await page.getByLabel('New admin password').getAttribute('aria-invalid'), 'true', 'the field is marked invalid')
  await page.getByLabel('New admin password').fill(PASSWORD)
  await page.getByLabel('Type it again').fill(PASSWORD)
  await page.getByRole('button', { name: /Set password/ }).click()
  await page.getByRole('heading', { name: 'Connect this box to the cloud' }).waitFor()
  const setupAgain = await call(`${box.origin}/api/setup`, { method: 'POST', body: { password: 'another password 123' } })
  t.equal(setupAgain.status, 409, 'the password cannot be set a second time')

  // The session cookie: httpOnly, Secure, SameSite=Strict.
  const cookie = (await page.context().cookies()).find((c) => c.name === 'box_session')
  t.match(cookie, { httpOnly: true, secure: true, sameSite: 'Strict' }, 'the session cookie is httpOnly, Secure and SameSite=Strict')

  // CSRF: a POST with the session cookie but without the token is refused; so is another Origin.
  const cookieHeader = `box_session=${cookie?.value ?? ''}`
  const noToken = await call(`${box.origin}/api/connectors/test`, { method: 'POST', headers: { cookie: cookieHeader }, body: { id: 'x', type: 'osbiz', config: {} } })
  t.equal(noToken.status, 403, 'a POST without the CSRF token is refused')
  t.match(JSON.parse(noToken.text), { error: { code: 'WEB_CSRF' } })
  const otherOrigin = await call(`${box.origin}/api/logout`, { method: 'POST', headers: { cookie: cookieHeader, origin: 'https://evil.example' } })
  t.equal(otherOrigin.status, 403, 'a POST from another origin is refused')
  const signedOut = await call(`${box.origin}/api/status`, { method: 'GET' })
  t.equal(signedOut.status, 401, 'the API needs a session')
  const openapi = JSON.parse((await call(`${box.origin}/api/openapi.json`, { method: 'GET' })).text) as { paths: Record<string, unknown> }
  t.ok(openapi.paths['/api/connectors/{id}'] && openapi.paths['/api/enrollment'], 'the OpenAPI document lists the routes')

  // Add an OSBiz connector with wrong credentials: Test connection says so in words.
  await page.getByRole('link', { name: 'PBX connectors' }).click()
  await page.getByRole('button', { name: 'Add a PBX' }).click()
  await page.getByLabel('PBX type').selectOption('osbiz')
  await page.getByLabel('Connector name').fill('osbiz-main')
  await page.getByLabel('Host').fill('127.0.0.1')
  await page.locator('details.advanced summary').click()
  await page.getByLabel(/^Port/).fill(String(pbxPort))
  await page.getByLabel(/^Application id/).fill('presence-gateway')
  await page.getByLabel(/^Username/).fill('cstauser')
  await page.getByLabel(/^Password/).fill('wrong-secret')
  for (const [i, [ext, name]] of [['201', 'Alice'], ['202', 'Bob'], ['203', 'Carol']].entries()) {
    await page.getByRole('button', { name: /Add a row to users/ }).click()
    await page.getByLabel(`Extension ${i + 1}`).fill(ext ?? '')
    await page.getByLabel(`Name ${i + 1}`, { exact: true }).fill(name ?? '')
  }
  await page.getByRole('button', { name: 'Test connection' }).click()
  const failure = page.locator('.test-result .alert-error')
  await failure.waitFor({ timeout: 20_000 })
  const failureText = await failure.textContent() ?? ''
  t.match(failureText, /Could not connect/, 'wrong credentials: the test says it could not connect')
  t.match(failureText, /credential|password|user|refused|application/i, `and names the cause: ${failureText}`)
  await screenshot(page, 'box-connector-wrong-credentials-1280')

  // Right credentials: users found, with sample extensions.
  await page.getByLabel(/^Password/).fill('csta-secret')
  await page.getByRole('button', { name: 'Test connection' }).click()
  const success = page.locator('.test-result .alert-ok')
  await success.waitFor({ timeout: 20_000 })
  t.match(await success.textContent(), /found 3 user\(s\).*201, 202, 203/s, 'right credentials: users found and sample extensions shown')
  await screenshot(page, 'box-connector-test-ok-1280')
  await page.getByRole('button', { name: 'Save' }).click()
  await page.getByText('Saved "osbiz-main"').waitFor()
  await screenshot(page, 'box-connectors-1280')

  // Credentials are write-only: not in the API's answer, not in the page, not in the file in the clear.
  const list = await page.evaluate(async () => (await fetch('/api/connectors')).text())
  t.notMatch(list, /csta-secret/, 'the API never sends the password back')
  t.match(JSON.parse(list), { connectors: [{ id: 'osbiz-main', secretsSet: ['password'] }] }, 'it says a password is stored')
  await page.getByRole('button', { name: 'Edit osbiz-main' }).click()
  t.equal(await page.getByLabel(/^Password/).inputValue(), '', 'the edit form shows the password field empty')
  t.notMatch(await page.content(), /csta-secret/, 'the password is nowhere in the DOM')
  const { readFile } = await import('node:fs/promises')
  t.notMatch(await readFile(`${box.dataDir}/connectors.json`, 'utf8'), /csta-secret/, 'connectors.json holds the password sealed')
  // Empty on edit keeps the stored password: the test still connects.
  await page.getByRole('button', { name: 'Test connection' }).click()
  await page.locator('.test-result .alert-ok').waitFor({ timeout: 20_000 })
  t.pass('an empty password on edit keeps the stored one')
  await page.getByRole('button', { name: 'Cancel' }).click()

  // The running gateway took the connector: the status page shows the link up with its users.
  await page.getByRole('link', { name: 'Status' }).click()
  await page.getByRole('cell', { name: 'osbiz-main osbiz' }).waitFor()
  await page.locator('.badge-connected', { hasText: 'connected' }).first().waitFor({ timeout: 15_000 })
  t.ok(box.gateway.links().some((l) => l.connectorId === 'osbiz-main' && l.state === 'connected'), 'the gateway runs the new connector')
  const call1 = pbx.incomingCall('201')
  pbx.answer(call1)
  await page.locator('tr', { hasText: /201.*call\./ }).first().waitFor({ timeout: 10_000 })
  t.pass('a call on 201 shows in the recent events')
  await page.locator('.log-line', { hasText: 'connector saved in the setup page' }).first().waitFor()
  t.pass('the live log tail shows the box\'s log')
  await page.getByRole('button', { name: 'Run diagnostics' }).click()
  await page.locator('.checks li').first().waitFor({ timeout: 20_000 })
  t.match(await page.locator('.checks').textContent(), /TCP connect.*refused the connection/s, 'diagnostics explain the unreachable broker in words')
  await screenshot(page, 'box-status-1280')
  await page.setViewportSize(PHONE)
  await screenshot(page, 'box-status-390')
  t.ok(await page.evaluate<boolean>('document.documentElement.scrollWidth <= 390'), 'the status page fits a phone\'s width (no sideways scrolling)')
  await page.getByRole('link', { name: 'PBX connectors' }).click()
  await page.getByRole('heading', { name: 'PBX connectors' }).waitFor()
  await screenshot(page, 'box-connectors-390')
  await page.getByRole('link', { name: 'Factory reset' }).click()
  await page.getByRole('heading', { name: 'Factory reset' }).waitFor()
  await screenshot(page, 'box-factory-reset-390')
  await page.setViewportSize(DESKTOP)
  await screenshot(page, 'box-factory-reset-1280')

  // Sign out, then a wrong password says what to do; the sixth in five minutes is rate limited.
  await page.getByRole('button', { name: 'Sign out' }).click()
  await page.getByRole('heading', { name: 'Sign in' }).waitFor()
  await screenshot(page, 'box-login-1280')
  await page.getByLabel('Admin password').fill('not the password')
  await page.getByRole('button', { name: 'Sign in' }).click()
  const wrong = page.getByRole('alert')
  await wrong.waitFor()
  t.match(await wrong.textContent(), /Wrong password: check Caps Lock/, 'a wrong password shows a useful message')
  const describedBy = await page.getByLabel('Admin password').getAttribute('aria-describedby')
  t.ok(describedBy && (await page.locator(`#${describedBy.split(' ').pop() ?? ''}`).count()) === 1, 'the message is tied to the field')
  await screenshot(page, 'box-login-wrong-1280')
  await page.setViewportSize(PHONE)
  await screenshot(page, 'box-login-wrong-390')
  await page.setViewportSize(DESKTOP)
  for (let i = 0; i < 4; i++) await call(`${box.origin}/api/login`, { method: 'POST', body: { password: `wrong ${i}` } })
  const limited = await call(`${box.origin}/api/login`, { method: 'POST', body: { password: PASSWORD } })
  t.equal(limited.status, 429, 'after 5 wrong passwords even the right one waits')
  t.ok(limited.headers['retry-after'], 'with Retry-After')
  await page.getByLabel('Admin password').fill(PASSWORD)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText(/Too many wrong passwords/).waitFor()
  t.pass('the page says to wait')
  await screenshot(page, 'box-login-rate-limited-1280')
})
