/**
 * Bundles the two services separately: dist/gateway.js (the box) and dist/cloud-relay.js (the cloud).
 * npm packages stay external (installed with `npm ci --omit=dev`). The gateway bundle must not reach MSAL or
 * the Graph client: the box never talks to Microsoft. The build fails if it does.
 *
 * The gateway is split: what it imports with import() (each PBX adapter, see gateway/src/adapters/registry.ts)
 * goes into dist/gateway-chunks/ and is read only when used, so a box loads the code (and the npm packages) of
 * the PBX it talks to and no other. One file would hoist every chunk's package imports to its top.
 */
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { build, type Metafile } from 'esbuild'

/** Where the gateway's chunks go, next to dist/gateway.js (the image copies both). */
export const GATEWAY_CHUNKS_DIR = 'dist/gateway-chunks'

const targets = [
  { entry: 'gateway/src/main.ts', out: 'dist/gateway.js', chunks: GATEWAY_CHUNKS_DIR, forbidden: ['@azure/msal-node', '@microsoft/microsoft-graph-client', 'cloud-relay/'] },
  { entry: 'cloud-relay/src/main.ts', out: 'dist/cloud-relay.js', forbidden: [] as string[] },
]

// The box's software version, as the image build names it (npm run image -- --version), else package.json's.
const version = process.env['PBXGW_VERSION'] ?? (JSON.parse(await readFile('package.json', 'utf8')) as { version: string }).version
if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(version)) {
  process.stderr.write(`PBXGW_VERSION "${version}" is not a version: letters, digits and . _ + - only, at most 64\n`)
  process.exit(2)
}

let failed = false
for (const target of targets) {
  // Stale chunks of an earlier build would be copied into the image with the new ones.
  if (target.chunks) await rm(target.chunks, { recursive: true, force: true })
  const result = await build({
    entryPoints: [target.entry],
    ...(target.chunks
      ? { outdir: 'dist', entryNames: target.out.replace(/^dist\/|\.js$/g, ''), chunkNames: `${target.chunks.replace(/^dist\//, '')}/[name]-[hash]`, splitting: true }
      : { outfile: target.out }),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
    define: { __PBXGW_VERSION__: JSON.stringify(version) },
  })
  const metafile: Metafile = result.metafile
  const inputs = Object.keys(metafile.inputs)
  const imports = Object.values(metafile.outputs).flatMap((o) => o.imports.map((i) => i.path))
  const outputs = Object.keys(metafile.outputs).filter((file) => file.endsWith('.js'))
  // V8 keeps each module's source in the heap: one byte a character when all are Latin-1, else two. esbuild escapes
  // non-ASCII in code but leaves comments as written, so one "→" in a doc comment doubled dist/gateway.js's 290 KB
  // there. What is left after esbuild is comment text, where an escape reads the same.
  for (const file of outputs) {
    const js = await readFile(file, 'utf8')
    if (/[^\x00-\x7f]/.test(js)) await writeFile(file, js.replace(/[^\x00-\x7f]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`))
  }
  const text = (await Promise.all(outputs.map((file) => readFile(file, 'utf8')))).join('\n')
  const hits = target.forbidden.filter((name) => imports.some((i) => i.startsWith(name)) || inputs.some((i) => i.includes(name)) || text.includes(name))
  const size = (await stat(target.out)).size
  const chunks = outputs.filter((file) => file !== target.out)
  const chunkBytes = (await Promise.all(chunks.map((file) => stat(file)))).reduce((sum, s) => sum + s.size, 0)
  const external = new Set(imports.filter((i) => !i.startsWith('dist/')))
  process.stdout.write(`${target.out}: version ${version}, ${(size / 1024).toFixed(1)} KiB, ${inputs.length} source files, ${external.size} external imports${chunks.length ? `; ${chunks.length} chunks in ${target.chunks}/ ${(chunkBytes / 1024).toFixed(1)} KiB` : ''}\n`)
  if (hits.length) {
    failed = true
    process.stderr.write(`${target.out} must not contain ${hits.join(', ')}\n`)
  }
}
if (failed) process.exit(1)
