import { createServer } from 'node:http'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { buildWeb } from '../../scripts/build-web.js'
import { launchBrowser, newContext } from '../helpers/browser.js'

t.test('both web apps build within budget and render in Chromium', async (t) => {
  const out = join('dist', 'web-test-smoke')
  const reports = await buildWeb(out)
  t.same(reports.map((r) => r.name), ['box', 'console'])
  t.notOk(reports.find((r) => r.name === 'box')?.overBudget, 'the box app is within its gzipped budget')
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').replace(/\?.*$/, '')
    const [app, file] = path === '/' ? ['box', 'index.html'] : [path.split('/')[1] ?? 'box', path.split('/')[2] || 'index.html']
    readFile(join(out, app, file)).then((body) => {
      res.writeHead(200, { 'content-type': file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'text/html' })
      res.end(body)
    }, () => { res.writeHead(404); res.end() })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const port = (server.address() as { port: number }).port
  const browser = await launchBrowser()
  t.teardown(() => browser.close())
  const page = await (await newContext(browser)).newPage()
  for (const app of ['box', 'console']) {
    await page.goto(`http://127.0.0.1:${port}/${app}/`)
    await page.waitForSelector('h1')
    t.match(await page.textContent('h1'), /PBX presence/, `${app} renders`)
  }
})
