/**
 * The console's Updates pages in Chromium against the whole product in secure mode (scripts/stack.ts): an operator
 * uploads a release, starts a rollout to the demo gateway while it is offline, pauses and resumes it, and sees the
 * gateway refuse the update in words once it is back (the demo gateway has no A/B update agent), which halts the
 * rollout by itself. The relay's certificate comes from its own CA: the only reason for ignoreHTTPSErrors.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import { Stack } from '../../scripts/stack.js'
import { parseRelayConfig } from '../../cloud-relay/src/config/load.js'
import type { RelayConfig } from '../../cloud-relay/src/config/schema.js'
import { launchBrowser, newContext, screenshot } from '../helpers/browser.js'
import { startSecureStack } from './fixtures/secure-stack.js'

const OPERATOR = { username: 'ops', password: 'correct horse battery' }

t.setTimeout(240_000)

t.test('console Updates: upload a release, start a rollout, pause and resume, a refusal in words halts it', async (t) => {
  const { stack, relay, base, dataDir } = await startSecureStack(t, 'updates', (dataDir, consoleDir) => {
    class BundleStack extends Stack {
      override relayConfig(): RelayConfig {
        return parseRelayConfig({ ...super.relayConfig(), updates: { dir: join(dataDir, 'bundles') } })
      }
    }
    return new BundleStack({ dataDir, logger: pino({ level: 'silent' }), secure: {}, consoleDir, sync: { commandTimeoutMs: 1500 } })
  })
  const browser = await launchBrowser()
  t.teardown(() => browser.close())
  const context = await newContext(browser, { ignoreHTTPSErrors: true })
  const page = await context.newPage()
  const created = await page.request.post(`${base}/api/v1/console/first-run`, { data: { ...OPERATOR, setupSecret: relay.consoleSetupSecret } })
  t.equal(created.status(), 201, 'the first operator is created (and signed in)')

  await page.goto(`${base}/console/#/gateways`)
  await page.getByRole('columnheader', { name: 'Version (slot)' }).waitFor()
  t.pass('the gateway list has a version and slot column')

  page.setDefaultTimeout(20_000)
  await page.getByRole('link', { name: 'Updates' }).click()
  await page.getByRole('heading', { name: 'Updates', level: 1 }).waitFor()
  await page.getByText('No releases yet.').waitFor()
  const bundle = join(dataDir, 'gateway-2.0.0.raucb')
  await writeFile(bundle, randomBytes(300 * 1024))
  await page.getByLabel('Version').fill('2.0.0')
  await page.getByLabel('What changed (optional)').fill('faster reconnect')
  await page.getByLabel('Bundle file (.raucb)').setInputFiles(bundle)
  await page.getByRole('button', { name: 'Upload release' }).click()
  await page.getByRole('row', { name: /2\.0\.0 0\.3 MiB .* faster reconnect/ }).waitFor()
  t.pass('the uploaded release is listed with its size and notes')
  await page.getByLabel('Version').fill('2.0.0')
  await page.getByLabel('Bundle file (.raucb)').setInputFiles(bundle)
  await page.getByRole('button', { name: 'Upload release' }).click()
  await page.getByRole('alert').filter({ hasText: 'Version 2.0.0 is released already' }).waitFor()
  t.pass('a version is released once, said in words')

  // The gateway goes offline: the rollout waits for it.
  await stack.stopGateway()
  await page.getByLabel('Gateways', { exact: true }).selectOption('gateway')
  await page.getByLabel('Gateway id').fill(stack.gatewayId)
  await page.getByLabel('Stages (% of those gateways)').fill('100')
  await page.getByRole('button', { name: 'Start rollout' }).click()
  await page.getByRole('heading', { name: /Rollout r-[0-9a-f]{8}/ }).waitFor()
  await page.getByTestId('rollout-state').getByText('Running').waitFor()
  const row = page.locator(`tr[data-gateway="${stack.gatewayId}"]`)
  await row.getByText(/Queued: told to update, starting soon/).waitFor()
  await page.getByRole('button', { name: 'Pause rollout' }).click()
  await page.getByTestId('rollout-state').getByText(/Paused by an admin/).waitFor()
  await page.getByRole('button', { name: 'Resume rollout' }).click()
  await page.getByTestId('rollout-state').getByText('Running').waitFor()
  t.pass('pause and resume, with the state in words')
  await screenshot(page, 'console-rollout-running-1280')

  // Back online: the gateway is told, refuses (no A/B agent in this demo), and the rollout halts by itself.
  await stack.startGateway()
  await row.getByText(/Failed before restarting: still on its previous version\. Why: the box refused the update: this gateway has no A\/B update agent/).waitFor({ timeout: 30_000 })
  await page.getByTestId('rollout-state').getByText(/Halted by itself/).waitFor()
  await page.getByText(/stopped by itself: 1 of 1 boxes in stage 1 \(100 %\) rolled back or failed, more than the 10 % allowed/).waitFor()
  t.notOk(await page.getByRole('button', { name: /Pause rollout|Resume rollout/ }).isVisible(), 'a halted rollout offers neither pause nor resume')
  await screenshot(page, 'console-rollout-halted-1280')

  await page.getByRole('link', { name: 'All rollouts' }).click()
  const listed = page.locator('tr[data-rollout]').filter({ hasText: 'Halted by itself' })
  await listed.waitFor()
  t.match(await listed.textContent(), /r-[0-9a-f]{8}2\.0\.0gateway gw-demoHalted by itself.*1 of 11 failed/, 'the rollouts list shows it halted with its counts')
})
