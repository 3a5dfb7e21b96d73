import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, normalize, relative } from 'node:path'
import t from 'tap'

/**
 * DESIGN §2: the two services share the protocol (gateway/protocol/, `#protocol/*`) and the kernel
 * (gateway/kernel/, `#kernel/*`), nothing else. This reads every import in gateway/ and cloud-relay/ and fails on
 * one that crosses the line: the relay reaching into gateway/ by path, the gateway reaching into cloud-relay/,
 * the kernel or the protocol reaching into either service, or a file reaching the kernel by path, not by alias.
 */

const SPECIFIER = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])([^'"\n]+)\1/g

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true })
  const nested = await Promise.all(entries.map(async (entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : sourceFiles(path)
    return /\.(ts|mts)$/.test(entry.name) && !entry.name.endsWith('.d.ts') ? [path] : []
  }))
  return nested.flat()
}

function area(path: string): 'relay' | 'gateway' | 'kernel' | 'protocol' | 'other' {
  if (path.startsWith('cloud-relay/')) return 'relay'
  if (path.startsWith('gateway/kernel/')) return 'kernel'
  if (path.startsWith('gateway/protocol/')) return 'protocol'
  if (path.startsWith('gateway/')) return 'gateway'
  return 'other'
}

/** What is wrong with one import of `file` (a path from the repository root), or undefined when it is allowed. */
function crossing(file: string, specifier: string): string | undefined {
  const from = area(file)
  if (specifier.startsWith('#')) {
    if (specifier.startsWith('#protocol/') || specifier.startsWith('#kernel/')) {
      if (from === 'protocol' && specifier.startsWith('#kernel/')) return 'the protocol depends on nothing but itself'
      return undefined
    }
    return `unknown alias ${specifier}: the services share #protocol/* and #kernel/* only`
  }
  if (!specifier.startsWith('.')) return undefined // a package or a node: built-in
  const target = normalize(join(dirname(file), specifier)).replaceAll('\\', '/')
  const to = area(target)
  if (to === 'kernel' && from !== 'kernel') return `reaches ${target} by path: import the kernel as #kernel/*`
  if (from === to) return undefined
  if (from === 'relay') return `the relay reaches into ${target}: only #protocol/* and #kernel/* are shared`
  if (from === 'gateway' && to === 'relay') return `the gateway reaches into ${target}: only #protocol/* and #kernel/* are shared`
  if (from === 'gateway' && to === 'protocol') return undefined // the protocol folder sits in the gateway's tree
  if (from === 'kernel' || from === 'protocol') return `${from} reaches into ${target}: it depends on no service`
  return undefined
}

t.test('the check itself catches each kind of crossing', async (t) => {
  t.match(crossing('cloud-relay/src/app.ts', '../../gateway/src/core/telemetry.js'), /relay reaches into gateway\/src/)
  t.match(crossing('cloud-relay/src/app.ts', '../../gateway/protocol/codec.js'), /only #protocol/)
  t.match(crossing('gateway/src/app.ts', '../../cloud-relay/src/app.js'), /gateway reaches into cloud-relay/)
  t.match(crossing('gateway/src/app.ts', '../kernel/clock.js'), /import the kernel as #kernel/)
  t.match(crossing('gateway/kernel/logging.ts', '../src/app.js'), /kernel reaches into gateway\/src/)
  t.match(crossing('gateway/protocol/codec.ts', '#kernel/clock.js'), /protocol depends on nothing/)
  t.match(crossing('cloud-relay/src/app.ts', '#gateway/app.js'), /unknown alias/)
  t.equal(crossing('cloud-relay/src/app.ts', '#kernel/clock.js'), undefined)
  t.equal(crossing('cloud-relay/src/app.ts', '#protocol/codec.js'), undefined)
  t.equal(crossing('cloud-relay/src/app.ts', './config/load.js'), undefined)
  t.equal(crossing('gateway/kernel/run-service.ts', './config-check.js'), undefined)
  t.equal(crossing('gateway/src/app.ts', 'pino'), undefined)
})

t.test('gateway/ and cloud-relay/ share only #protocol/* and #kernel/*', async (t) => {
  const files = [...(await sourceFiles('gateway')), ...(await sourceFiles('cloud-relay'))].map((f) => relative('.', f).replaceAll('\\', '/'))
  const problems: string[] = []
  const aliased = { relay: 0, gateway: 0 }
  for (const file of files) {
    const text = await readFile(file, 'utf8')
    for (const match of text.matchAll(SPECIFIER)) {
      const specifier = match[2]!
      const problem = crossing(file, specifier)
      if (problem !== undefined) problems.push(`${file}: ${specifier}: ${problem}`)
      if (specifier.startsWith('#kernel/')) {
        const from = area(file)
        if (from === 'relay' || from === 'gateway') aliased[from]++
      }
    }
  }
  t.same(problems, [], 'no import crosses a service boundary')
  // The walk did read the imports: both services use the kernel by its alias.
  t.ok(aliased.relay > 20, `the relay imports #kernel/* (${aliased.relay} imports)`)
  t.ok(aliased.gateway > 20, `the gateway imports #kernel/* (${aliased.gateway} imports)`)
})
