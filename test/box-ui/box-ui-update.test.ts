import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import pino from 'pino'
import { GATEWAY_VERSION } from '../../gateway/src/app.js'
import { systemClock } from '#kernel/clock.js'
import { Counters } from '#kernel/counters.js'
import { UpdateAgent } from '../../gateway/src/update/update-agent.js'
import { screenshot } from '../helpers/browser.js'
import { FakeSlots } from '../helpers/fake-slots.js'
import { call, claimBox, openBoxPage, startBox } from './fixtures/box-harness.js'

const PASSWORD = 'correct horse battery'

t.test('Software update page: a bundle uploaded on the setup page is checked, installed and rebooted into, with progress; uploads need a session, the CSRF token and a size within the limit', async (t) => {
  const slots = new FakeSlots('A')
  const box = await startBox({
    maxUploadBytes: 256 * 1024,
    updates: async (dataDir) => {
      const agent = new UpdateAgent({ dir: join(dataDir, 'update'), runningVersion: GATEWAY_VERSION }, { installer: slots, clock: systemClock, logger: pino({ level: 'silent' }), counters: new Counters() })
      await agent.start()
      return agent
    },
  })
  t.teardown(() => box.close())
  const page = await openBoxPage(t, box)
  await claimBox(page, box, PASSWORD)

  await page.getByRole('link', { name: 'Software update' }).click()
  await page.getByRole('heading', { name: 'Software update' }).waitFor()
  await page.getByText(`This box runs version ${GATEWAY_VERSION} from slot A.`).waitFor()
  const bundle = randomBytes(100 * 1024)
  const file = join(tmpdir(), `bundle-${process.pid}.raucb`)
  await writeFile(file, bundle)
  t.teardown(() => import('node:fs/promises').then((fs) => fs.rm(file, { force: true })))
  await page.getByLabel('Update bundle (.raucb)').setInputFiles(file)
  await page.getByRole('button', { name: 'Upload and install' }).click()
  await page.getByText('Update to 2.0.0: Installed. The box restarts into the new version now').waitFor({ timeout: 15_000 })
  t.pass('the page shows the state in words, with the version read from the bundle')
  t.same(slots.calls, ['verify', 'install', 'reboot'])
  t.ok(slots.installed?.equals(bundle), 'the installed bundle is the uploaded file, byte for byte')
  await screenshot(page, 'box-update-1280')

  // The refusals, as a script or another site would meet them.
  const cookie = (await page.context().cookies()).find((c) => c.name === 'box_session')
  const cookieHeader = `box_session=${cookie?.value ?? ''}`
  const session = JSON.parse((await call(`${box.origin}/api/session`, { method: 'GET', headers: { cookie: cookieHeader } })).text) as { csrfToken: string }
  const post = (headers: Record<string, string>, body: Buffer | string) => call(`${box.origin}/api/update/bundle`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...headers }, rawBody: body as string })
  t.equal((await post({}, 'x')).status, 401, 'no session: refused')
  t.equal((await call(`${box.origin}/api/update`, { method: 'GET' })).status, 401, 'the update view needs a session too')
  const noToken = await post({ cookie: cookieHeader }, 'x')
  t.equal(noToken.status, 403, 'no CSRF token: refused')
  t.match(JSON.parse(noToken.text), { error: { code: 'WEB_CSRF' } })
  t.equal((await post({ cookie: cookieHeader, 'x-csrf-token': session.csrfToken, origin: 'https://evil.example' }, 'x')).status, 403, 'another origin: refused')
  const busy = await post({ cookie: cookieHeader, 'x-csrf-token': session.csrfToken }, 'another bundle')
  t.equal(busy.status, 409, 'a second bundle while one is rebooting: refused')
  t.match(JSON.parse(busy.text), { error: { message: /already updating to 2.0.0 \(rebooting\): wait until it finishes/ } })
  const tooLarge = await post({ cookie: cookieHeader, 'x-csrf-token': session.csrfToken }, randomBytes(300 * 1024).toString('latin1'))
  t.equal(tooLarge.status, 413, 'beyond the size limit: refused')
  t.match(JSON.parse(tooLarge.text), { error: { message: /larger than the 0.25 MiB an update bundle may be/ } })
  const json = await call(`${box.origin}/api/update/bundle`, { method: 'POST', headers: { cookie: cookieHeader, 'x-csrf-token': session.csrfToken }, body: { file: 'x' } })
  t.equal(json.status, 400, 'not a file: refused')
  t.match(JSON.parse(json.text), { error: { message: /Send the bundle file itself/ } })
  const view = JSON.parse((await call(`${box.origin}/api/update`, { method: 'GET', headers: { cookie: cookieHeader } })).text) as { latest: { state: string } }
  t.equal(view.latest.state, 'rebooting', 'GET /api/update reports the latest progress')
})
