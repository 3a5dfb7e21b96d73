// The console's static files are an allow-list: names inherited from Object.prototype (/console/constructor,
// /console/__proto__) are not files, and a relay whose console is not built does not tell strangers where it is
// installed.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import t from 'tap'
import { consolePublicRoutes } from '../../cloud-relay/src/console/console-routes.js'

t.test('only the console\'s own files are served; the install path stays private', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'console-assets-')) // empty: a relay whose console is not built
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const app = Fastify()
  await app.register(consolePublicRoutes({ dir }))
  t.teardown(() => app.close())
  for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) {
    const res = await app.inject({ method: 'GET', url: `/console/${name}` })
    t.equal(res.statusCode, 404, `/console/${name} is not a console file`)
    t.notMatch(res.body, dir, 'and the answer does not name the install folder')
  }
  const missing = await app.inject({ method: 'GET', url: '/console/app.js' })
  t.equal(missing.statusCode, 503, 'a known file of an unbuilt console: 503')
  t.notMatch(missing.body, dir, 'without the install folder')
  t.match(JSON.parse(missing.body).error.message, /npm run build:web/, 'in words that say what the operator does')
})
