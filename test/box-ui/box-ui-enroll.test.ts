import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { Stack } from '../../scripts/stack.js'
import { launchBrowser, newContext, screenshot } from '../helpers/browser.js'
import { eventually } from '../helpers/eventually.js'
import { DESKTOP, PHONE, startBox } from './fixtures/box-harness.js'

/** Tab until the focused element matches, as a keyboard user would; fails after `max` presses. */
async function tabTo(page: import('playwright-core').Page, matches: (el: { tag: string; name: string; text: string; label: string }) => boolean, max = 40): Promise<void> {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab')
    // A string: this file is type-checked without DOM types.
    const el = await page.evaluate<{ tag: string; name: string; text: string; label: string }>(`(() => {
      const a = document.activeElement
      const label = a && a.id ? (document.querySelector('label[for="' + a.id + '"]') || {}).textContent || '' : ''
      return { tag: a ? a.tagName.toLowerCase() : '', name: (a && a.getAttribute('name')) || '', text: a && a.textContent ? a.textContent.trim() : '', label }
    })()`)
    if (matches(el)) return
  }
  throw new Error('the control was not reachable with Tab')
}

t.test('keyboard only: set the password and enrol the box against a real relay (mutual TLS); the box connects and the relay shows it Online', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'box-ui-relay-'))
  const stack = new Stack({ dataDir, logger: pino({ level: 'silent' }), secure: {} })
  await stack.startSimulators()
  await stack.startRelay()
  t.teardown(async () => { await stack.stop(); await rm(dataDir, { recursive: true, force: true }) })
  const relay = stack.relay!
  const box = await startBox()
  t.teardown(() => box.close())
  const browser = await launchBrowser()
  t.teardown(() => browser.close())
  const page = await (await newContext(browser, { viewport: DESKTOP, ignoreHTTPSErrors: true })).newPage()

  await page.goto(box.url)
  await page.getByRole('heading', { name: /set the admin password/ }).waitFor()
  await tabTo(page, (el) => el.name === 'setupCode')
  await page.keyboard.type(box.setupCode() ?? '')
  await tabTo(page, (el) => el.name === 'password')
  await page.keyboard.type('keyboard only 2024')
  await tabTo(page, (el) => el.name === 'confirm')
  await page.keyboard.type('keyboard only 2024')
  await page.keyboard.press('Enter')
  await page.getByRole('heading', { name: 'Connect this box to the cloud' }).waitFor()
  // The page moves focus once it has rendered, a moment after the heading appears.
  const onHeading = await eventually(async () => (await page.evaluate<string>('document.activeElement && document.activeElement.tagName')) === 'H2' || undefined, 'focus on the new page\'s heading', 5_000).catch(() => false)
  t.equal(onHeading, true, 'focus moves to the new page\'s heading')

  // A wrong code: the relay's refusal in words, tied to the field.
  const { code } = await relay.enrollment.createGateway('contoso', { id: 'gw-box-ui', name: 'Box UI' })
  await tabTo(page, (el) => el.name === 'code')
  await page.keyboard.type('ABCD-EFGH-JKMN-PQRS')
  await tabTo(page, (el) => el.name === 'relayUrl')
  await page.keyboard.type(stack.enrollUrl)
  await tabTo(page, (el) => el.name === 'caFingerprint')
  await page.keyboard.type(relay.pki.caFingerprint256)
  await screenshot(page, 'box-enrol-1280')
  await tabTo(page, (el) => el.tag === 'button' && /Enrol this box/.test(el.text))
  await page.keyboard.press('Enter')
  const refusal = page.locator('#main [role="alert"]').first()
  await refusal.waitFor({ timeout: 20_000 })
  t.match(await refusal.textContent(), /does not know this enrollment code/, 'a wrong code is explained')
  t.equal(await page.getByLabel('Enrollment code').getAttribute('aria-invalid'), 'true', 'on the code field')
  await screenshot(page, 'box-enrol-wrong-code-1280')

  // The right code, still by keyboard: enrolled, connecting, connected.
  await page.getByLabel('Enrollment code').focus()
  await page.keyboard.press('Control+A')
  await page.keyboard.type(code)
  await page.keyboard.press('Enter')
  await page.getByText(/This box is enrolled as/).waitFor({ timeout: 20_000 })
  t.match(await page.locator('.steps').textContent(), /Gateway gw-box-ui, tenant contoso/, 'the wizard shows the gateway and tenant')
  await page.locator('.step-done', { hasText: /^Connected/ }).waitFor({ timeout: 30_000 })
  t.match(await page.locator('.steps').textContent(), /Through mqtts:\/\/127\.0\.0\.1/, 'connected through the relay\'s mTLS broker')
  t.equal(box.gateway.tunnel().gatewayId, 'gw-box-ui', 'the gateway took its id from enrollment')
  await screenshot(page, 'box-enrol-connected-1280')
  await page.setViewportSize(PHONE)
  await screenshot(page, 'box-enrol-connected-390')
  await page.setViewportSize(DESKTOP)

  let online = false
  for (let i = 0; i < 60 && !online; i++) {
    online = relay.liveness.view('gw-box-ui')?.state === 'online'
    if (!online) await new Promise((r) => setTimeout(r, 250))
  }
  t.ok(online, 'the relay shows the box Online')

  // Keyboard to the status page: links are reachable and operable with Enter.
  await tabTo(page, (el) => el.tag === 'a' && el.text === 'Status')
  await page.keyboard.press('Enter')
  await page.getByRole('heading', { name: 'Status' }).waitFor()
  t.match(await page.locator('dl.facts').textContent(), /connected.*gw-box-ui/s, 'status shows the tunnel connected as gw-box-ui')
  await tabTo(page, (el) => el.tag === 'button' && el.text === 'Run diagnostics')
  await page.keyboard.press('Space')
  await page.locator('.checks li').first().waitFor({ timeout: 20_000 })
  const checks = await page.locator('.checks').textContent() ?? ''
  t.match(checks, /TLS handshake.*Trusted certificate/s, 'diagnostics: TLS to the broker with the certificate\'s validity')
  t.match(checks, /Clock vs relay.*within/s, 'diagnostics: the clock against the relay')
  await screenshot(page, 'box-diagnostics-1280')

  // Factory reset by keyboard: typed confirmation, then the box is new again.
  await tabTo(page, (el) => el.tag === 'a' && el.text === 'Factory reset')
  await page.keyboard.press('Enter')
  await page.getByRole('heading', { name: 'Factory reset' }).waitFor()
  await tabTo(page, (el) => el.name === 'confirm')
  await page.keyboard.type('reset')
  await page.keyboard.press('Enter')
  t.match(await page.locator('#main [role="alert"]', { hasText: 'Type RESET' }).textContent(), /in capitals/, 'the confirmation must be typed exactly')
  await page.getByLabel('Type RESET to confirm').fill('RESET')
  await page.keyboard.press('Enter')
  await page.getByRole('heading', { name: /set the admin password/ }).waitFor({ timeout: 20_000 })
  t.notOk(box.gateway.tunnel().enrolled, 'after the reset the box is not enrolled')
  t.pass('after the reset the first visit starts again')
})
