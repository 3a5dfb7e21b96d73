import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

/** Debian's Chromium (`apt-get install -y chromium`; .ci/run installs it). Playwright's own download does not work here. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

/** Starts headless Chromium; fails with what to do when it is missing (browser tests never skip). */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does), or set CHROMIUM_PATH`)
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
}

/** A context that trusts nothing special: tests pass `ignoreHTTPSErrors` only where a self-signed box certificate is the point. */
export async function newContext(browser: Browser, options: { viewport?: { width: number; height: number }; ignoreHTTPSErrors?: boolean } = {}): Promise<BrowserContext> {
  return browser.newContext({ viewport: options.viewport ?? { width: 1280, height: 800 }, ignoreHTTPSErrors: options.ignoreHTTPSErrors ?? false })
}

/** Saves a full-page screenshot under test-artifacts/screenshots/ (kept by CI as an artifact). */
export async function screenshot(page: Page, name: string): Promise<string> {
  const dir = join('test-artifacts', 'screenshots')
  await mkdir(dir, { recursive: true })
  const file = join(dir, `${name}.png`)
  await page.screenshot({ path: file, fullPage: true })
  return file
}
