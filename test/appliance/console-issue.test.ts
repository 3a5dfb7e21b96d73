import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { ConsoleIssueWriter, escapeIssueText, renderConsoleIssue, setupPageUrls } from '../../gateway/src/appliance/console-issue.js'
import { SetupCodeStore } from '../../gateway/src/web/setup-code.js'
import { ManualClock } from '../enrollment/fixtures/enrollment-world.js'

const FINGERPRINT = Array.from({ length: 32 }, (_, i) => (i * 7 + 16).toString(16).toUpperCase().padStart(2, '0')).join(':')

t.test('the console screen of an unclaimed box: URLs, fingerprint in two lines, the setup code', async (t) => {
  const text = renderConsoleIssue({ hostname: 'pbxgw-1a2b', ipv4: ['192.168.1.23', '10.0.0.5'], port: 443, fingerprint256: FINGERPRINT, setupCode: '7KQX-M3DW-9TPA' })
  t.match(text, /^\s+https:\/\/pbxgw-1a2b\.local\/$/m, 'the mDNS name, without :443')
  t.match(text, /^\s+https:\/\/192\.168\.1\.23\/$/m, 'each LAN address')
  t.match(text, /^\s+https:\/\/10\.0\.0\.5\/$/m)
  const pairs = FINGERPRINT.split(':')
  t.match(text, `      ${pairs.slice(0, 16).join(':')}\n      ${pairs.slice(16).join(':')}\n`, 'the fingerprint, 16 bytes a line (fits 80 columns)')
  t.match(text, /one-time setup code[^\n]*\n\s+7KQX-M3DW-9TPA\n/, 'the setup code')
  t.notMatch(text, /is set up/, 'not yet set up')
  t.ok(text.split('\n').every((line) => line.length <= 80), 'every line fits an 80-column console')
  t.notMatch(text.replace(/\\\\/g, ''), /\\/, 'no agetty escape anywhere')
})

t.test('once claimed: no code, how to sign in and reset; another port appears in the URLs', async (t) => {
  const text = renderConsoleIssue({ hostname: 'pbxgw-1a2b', ipv4: ['192.168.1.23'], port: 8443, fingerprint256: FINGERPRINT, setupCode: undefined })
  t.match(text, /https:\/\/pbxgw-1a2b\.local:8443\//)
  t.match(text, /https:\/\/192\.168\.1\.23:8443\//)
  t.match(text, /This box is set up/)
  t.match(text, /factory reset/i)
  t.notMatch(text, /setup code\b[^\n]*\n\s+[2-9A-Z]{4}-/, 'no code')
})

t.test('no address yet: says what to check', async (t) => {
  t.match(renderConsoleIssue({ hostname: '', ipv4: [], port: 443, fingerprint256: FINGERPRINT, setupCode: 'AAAA-BBBB-CCCC' }), /no network address yet: check the network cable/)
  t.same(setupPageUrls({ hostname: 'box.example.com', ipv4: [], port: 443 }), ['https://box.example.com/'], 'a name with a domain is used as it is')
})

t.test('values cannot become agetty escapes or extra lines', async (t) => {
  t.equal(escapeIssueText('a\\4b'), 'a\\\\4b', 'a backslash is doubled: agetty prints it, it never expands \\4')
  t.equal(escapeIssueText('x\ny\u001b[2Jz'), 'xy[2Jz', 'control characters (line breaks, ESC) are dropped')
  const text = renderConsoleIssue({ hostname: 'evil\\n\nhost', ipv4: [], port: 443, fingerprint256: FINGERPRINT, setupCode: undefined })
  t.match(text, 'evil\\\\nhost', 'the host name shows literally')
  t.notMatch(text, /[^\\]\\n/, 'no single backslash-n left for agetty to expand')
})

t.test('the writer: written at start, again when claimed and when the addresses change', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'console-issue-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const dataDir = join(dir, 'data')
  const code = await new SetupCodeStore(dataDir).ensure()
  const clock = new ManualClock()
  let addresses = ['192.168.1.23']
  const file = join(dir, 'run', 'console.issue')
  const writer = new ConsoleIssueWriter({ file, dataDir, port: 443, fingerprint256: FINGERPRINT, clock, logger: pino({ level: 'silent' }), hostname: () => 'pbxgw-1a2b', addresses: () => addresses })
  await writer.start()
  t.teardown(() => writer.stop())
  let text = await readFile(file, 'utf8')
  t.match(text, code, 'the setup code is on the screen')
  t.match(text, 'https://192.168.1.23/')

  addresses = ['192.168.1.99']
  clock.advance(5000)
  await writer.refresh()
  text = await readFile(file, 'utf8')
  t.match(text, 'https://192.168.1.99/', 'a new DHCP address shows after the next poll')
  t.notMatch(text, '192.168.1.23')

  await writeFile(join(dataDir, 'web', 'admin.json'), '{}')
  await writer.refresh()
  text = await readFile(file, 'utf8')
  t.match(text, /This box is set up/, 'claimed: the screen says so')
  t.notMatch(text, code, 'and the code is gone')
  t.equal(ConsoleIssueWriter.defaultFile({ RUNTIME_DIRECTORY: '/run/pbx-gateway' }), '/run/pbx-gateway/console.issue', 'default from RuntimeDirectory=')
  t.equal(ConsoleIssueWriter.defaultFile({}), undefined, 'off without it')
})
