/**
 * Builds the two browser apps in web-ui/ to static files each service serves:
 *   web-ui/box/src/main.tsx      → dist/web/box/      (the box's local setup UI, served by the gateway)
 *   web-ui/console/src/main.tsx  → dist/web/console/  (the cloud console, served by the relay)
 * Each gets index.html (from its folder), app.js and app.css. Prints the gzipped JavaScript size of each and
 * fails when the box's exceeds its budget (it runs on a Raspberry Pi and is opened over a site's LAN).
 */
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

export interface WebApp {
  name: 'box' | 'console'
  /** Gzipped JavaScript budget in bytes (undefined: none). */
  budgetGzipBytes?: number
}

export const WEB_APPS: readonly WebApp[] = [
  { name: 'box', budgetGzipBytes: 150 * 1024 },
  { name: 'console' },
]

export interface WebBuildReport {
  name: string
  outDir: string
  jsBytes: number
  jsGzipBytes: number
  cssBytes: number
  overBudget: boolean
}

/** Builds every app into `<outRoot>/<name>/`; returns the sizes. Never throws on a budget: the caller decides. */
export async function buildWeb(outRoot = 'dist/web', options: { minify?: boolean } = {}): Promise<WebBuildReport[]> {
  const reports: WebBuildReport[] = []
  for (const app of WEB_APPS) {
    const source = join('web-ui', app.name)
    const outDir = join(outRoot, app.name)
    await mkdir(outDir, { recursive: true })
    await build({
      entryPoints: { app: join(source, 'src', 'main.tsx') },
      outdir: outDir,
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: ['chrome110', 'firefox110', 'safari16'],
      jsx: 'automatic',
      jsxImportSource: 'preact',
      minify: options.minify ?? true,
      sourcemap: false,
      legalComments: 'none',
      logLevel: 'warning',
      tsconfig: 'web-ui/tsconfig.json',
    })
    await copyFile(join(source, 'index.html'), join(outDir, 'index.html'))
    const js = await readFile(join(outDir, 'app.js'))
    const css = await readFile(join(outDir, 'app.css')).catch(() => Buffer.alloc(0))
    if (css.length === 0) await writeFile(join(outDir, 'app.css'), '') // index.html links it
    const jsGzipBytes = gzipSync(js, { level: 9 }).length
    reports.push({
      name: app.name, outDir, jsBytes: js.length, jsGzipBytes, cssBytes: css.length,
      overBudget: app.budgetGzipBytes !== undefined && jsGzipBytes > app.budgetGzipBytes,
    })
  }
  await writeFile(join(outRoot, 'sizes.json'), JSON.stringify(reports, null, 2))
  return reports
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const reports = await buildWeb()
  let failed = false
  for (const r of reports) {
    const budget = WEB_APPS.find((a) => a.name === r.name)?.budgetGzipBytes
    process.stdout.write(`dist/web/${r.name}: app.js ${(r.jsBytes / 1024).toFixed(1)} KiB, ${(r.jsGzipBytes / 1024).toFixed(1)} KiB gzipped${budget ? ` (budget ${budget / 1024} KiB)` : ''}, app.css ${(r.cssBytes / 1024).toFixed(1)} KiB\n`)
    if (r.overBudget) {
      failed = true
      process.stderr.write(`dist/web/${r.name}/app.js is over its gzipped budget: cut dependencies or split the bundle\n`)
    }
  }
  if (failed) process.exit(1)
}
