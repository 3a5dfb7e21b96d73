/**
 * Bundles the two services separately: dist/gateway.js (the box) and dist/cloud-relay.js (the cloud).
 * npm packages stay external (installed with `npm ci --omit=dev`). The gateway bundle must not reach MSAL or
 * the Graph client: the box never talks to Microsoft. The build fails if it does.
 */
import { readFile, stat } from 'node:fs/promises'
import { build, type Metafile } from 'esbuild'

const targets = [
  { entry: 'gateway/src/main.ts', out: 'dist/gateway.js', forbidden: ['@azure/msal-node', '@microsoft/microsoft-graph-client', 'cloud-relay/'] },
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
  const result = await build({
    entryPoints: [target.entry],
    outfile: target.out,
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
  const text = await readFile(target.out, 'utf8')
  const hits = target.forbidden.filter((name) => imports.some((i) => i.startsWith(name)) || inputs.some((i) => i.includes(name)) || text.includes(name))
  const size = (await stat(target.out)).size
  process.stdout.write(`${target.out}: version ${version}, ${(size / 1024).toFixed(1)} KiB, ${inputs.length} source files, ${new Set(imports).size} external imports\n`)
  if (hits.length) {
    failed = true
    process.stderr.write(`${target.out} must not contain ${hits.join(', ')}\n`)
  }
}
if (failed) process.exit(1)
