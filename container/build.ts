/**
 * npm run container:build: builds the repo's Dockerfile on a machine without Docker or Docker Hub (buildah,
 * a Debian base made with mmdebstrap, the host's CA bundle as a build secret) and prints build time and size.
 */
import { buildImage, DEFAULT_BASE, DEFAULT_TAG, hostCaBundle, progress, parseCommandLine } from './podman.js'

const HELP = `npm run container:build -- [options]

Builds the image of the Dockerfile (gateway and relay, Node 24 from the npm registry) with buildah, as root,
without a Docker engine: the Debian base is made here with mmdebstrap when it is missing. Prints the build
time and the image size.

Options:
  --tag NAME       the image to make (default ${DEFAULT_TAG})
  --base IMAGE     BASE_IMAGE for the Dockerfile (default ${DEFAULT_BASE}, made with mmdebstrap)
  --rebuild-base   make the Debian base again (new security updates)
  --cafile FILE    CA bundle for the registry's TLS inside the build, passed as the ca-bundle build secret
                   (never stored in the image). Default: the host npm's cafile, NODE_EXTRA_CA_CERTS or
                   /etc/ssl/certs/ca-certificates.crt: on machines behind an inspecting proxy only the host's
                   bundle holds the proxy's CA.
  --no-cafile      pass no CA bundle (the base's own ca-certificates must then verify the registry)
  --no-cache       build every layer again
  --help           this text

Needs: apt-get install -y buildah podman mmdebstrap. Exit codes: 0 built, 1 failed, 2 bad command line.
`

const values = parseCommandLine('container:build', HELP, {
  tag: { type: 'string', default: DEFAULT_TAG },
  base: { type: 'string', default: DEFAULT_BASE },
  'rebuild-base': { type: 'boolean', default: false },
  cafile: { type: 'string' },
  'no-cafile': { type: 'boolean', default: false },
  'no-cache': { type: 'boolean', default: false },
})

try {
  const cafile = values['no-cafile'] ? undefined : values.cafile ?? await hostCaBundle()
  progress(cafile ? `CA bundle for the build: ${cafile} (build secret ca-bundle)` : 'no CA bundle passed to the build')
  const figures = await buildImage({ tag: values.tag, base: values.base, rebuildBase: values['rebuild-base'], cafile, layers: !values['no-cache'] })
  process.stdout.write(`build time: ${figures.buildSeconds.toFixed(1)} s${figures.baseSeconds === undefined ? '' : ` (+ ${figures.baseSeconds.toFixed(1)} s for the Debian base)`}\n`)
  process.stdout.write(`image size: ${(figures.sizeBytes / 1e6).toFixed(1)} MB (${values.tag})\n`)
} catch (err) {
  process.stderr.write(`container:build: ${(err as Error).message}\n`)
  process.exit(1)
}
