import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { NetworkConfirmError, NetworkService } from '../../gateway/src/appliance/network-service.js'
import { checkNetworkSettings, renderNetworkFiles, type NetworkSettings } from '../../gateway/src/appliance/network-settings.js'
import { ManualClock } from '../enrollment/fixtures/enrollment-world.js'

const STATIC: NetworkSettings = { mode: 'static', address: '192.168.1.20', prefix: 24, gateway: '192.168.1.1', dns: ['192.168.1.1', '2001:db8::53'], ntp: ['ntp.example.com', '192.168.1.1'], httpProxy: 'http://proxy.example.com:3128' }

t.test('good settings pass; every kind of bad input is named in words', async (t) => {
  t.same(checkNetworkSettings(STATIC), [], 'a complete static setting')
  t.same(checkNetworkSettings({ mode: 'dhcp', dns: [], ntp: [] }), [], 'plain DHCP')
  t.same(checkNetworkSettings({ mode: 'static', address: '2001:db8::20', prefix: 64, gateway: '2001:db8::1', dns: [], ntp: [] }), [], 'IPv6')
  const bad: Array<[Partial<NetworkSettings>, RegExp]> = [
    [{ address: '192.168.1.300' }, /address: "192\.168\.1\.300" is not an IPv4 or IPv6 address/],
    [{ address: '127.0.0.5' }, /loopback/],
    [{ address: '192.168.1.0' }, /network's own address/],
    [{ address: '192.168.1.255' }, /broadcast/],
    [{ prefix: 33 }, /prefix: 33 is out of range: use 8 to 32/],
    [{ prefix: 4 }, /out of range/],
    [{ gateway: '10.0.0.1' }, /not in 192\.168\.1\.20\/24/],
    [{ gateway: '2001:db8::1' }, /IPv6 but the address is IPv4/],
    [{ address: undefined }, /needs the box's address/],
    [{ dns: ['dns.example.com'] }, /is not an IP address/],
    [{ dns: ['1.1.1.1', '1.0.0.1', '8.8.8.8', '8.8.4.4', '9.9.9.9'] }, /at most 4 DNS servers/],
    [{ ntp: ['a.example', 'b.example', 'c.example', 'd.example', 'e.example'] }, /at most 4 NTP servers/],
    [{ ntp: ['-bad-.example'] }, /neither a host name/],
    [{ ntp: ['pool.ntp.org\nNTP=evil'] }, /remove spaces, line breaks/],
    [{ address: '192.168.1.20\n[Network]' }, /remove spaces, line breaks/],
    [{ gateway: '192.168.1.1;reboot' }, /remove spaces, line breaks/],
    [{ httpProxy: 'http://proxy:3128/$(reboot)' }, /remove spaces, line breaks/],
    [{ httpProxy: 'https://proxy:3128' }, /use an http:\/\/ proxy URL/],
    [{ httpProxy: 'http://user:pw@proxy:3128' }, /credentials are not supported/],
    [{ httpProxy: 'http://proxy:3128/path' }, /only the proxy's host and port/],
    [{ httpProxy: 'proxy' }, /not a URL/],
  ]
  for (const [change, expected] of bad) {
    const problems = checkNetworkSettings({ ...STATIC, ...change })
    t.match(problems.join('\n'), expected, `${JSON.stringify(change)} → ${problems[0] ?? 'no problem found'}`)
  }
  t.match(checkNetworkSettings({ mode: 'dhcp', address: '192.168.1.20', dns: [], ntp: [] }).join(), /with DHCP the box gets its address/, 'DHCP with an address')
})

t.test('rendered files: networkd, timesyncd, proxy environment', async (t) => {
  const files = renderNetworkFiles(STATIC)
  const network = files['10-pbxgw.network']
  t.match(network, /\[Match\]\nName=en\* eth\*/)
  t.match(network, /DHCP=no\nAddress=192\.168\.1\.20\/24\nGateway=192\.168\.1\.1\nDNS=192\.168\.1\.1\nDNS=2001:db8::53\n/)
  t.match(files['timesyncd.conf.d/pbxgw.conf'], /\[Time\]\nNTP=ntp\.example\.com 192\.168\.1\.1\n/)
  t.match(files['proxy.env'], /^https_proxy=http:\/\/proxy\.example\.com:3128$/m)
  const dhcp = renderNetworkFiles({ mode: 'dhcp', dns: ['9.9.9.9'], ntp: [] })
  t.match(dhcp['10-pbxgw.network'], /DHCP=yes\nDNS=9\.9\.9\.9\n[^]*\[DHCPv4\]\nUseDNS=no/, 'DHCP with own DNS: the DHCP server\'s are not used')
  t.notMatch(dhcp['timesyncd.conf.d/pbxgw.conf'], /NTP=/, 'no NTP line: timesyncd keeps DHCP\'s or its default')
  t.notMatch(dhcp['proxy.env'], /proxy=/, 'no proxy')
})

t.test('a new static address is a trial: reverted when not confirmed in time, kept when confirmed at the new address', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'network-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const clock = new ManualClock()
  const service = new NetworkService({ dataDir, clock, logger: pino({ level: 'silent' }), trialMs: 5 * 60_000 })
  await service.start()
  t.teardown(async () => { service.stop(); await service.idle() })
  const pending = (name: string) => readFile(join(dataDir, 'network', 'pending', name), 'utf8')

  const put = await service.put(STATIC)
  t.ok(put.trial, 'a trial')
  t.equal(put.trial?.until, clock.now() + 5 * 60_000, 'for five minutes')
  t.match(await pending('10-pbxgw.network'), /Address=192\.168\.1\.20\/24/, 'rendered for the apply unit')
  const firstRequest = await pending('apply-request')
  t.equal((await stat(join(dataDir, 'network', 'settings.json'))).mode & 0o777, 0o600, 'settings.json is 0600')

  await t.rejects(service.confirm('192.168.1.50'), new NetworkConfirmError('NETWORK_CONFIRM_WRONG_ADDRESS', ''), 'a confirmation arriving at the old address is refused')
  await t.rejects(service.confirm('192.168.1.50'), { message: /Open the setup page at the new address https:\/\/192\.168\.1\.20\// })

  clock.advance(5 * 60_000 - 1)
  t.equal((await service.get()).settings.mode, 'static', 'still on trial one millisecond before the deadline')
  clock.advance(1)
  await service.idle()
  const after = await service.get()
  t.equal(after.settings.mode, 'dhcp', 'not confirmed: back to DHCP by itself')
  t.notOk(after.trial, 'and no trial left')
  t.match(await pending('10-pbxgw.network'), /DHCP=yes/, 'rendered again')
  t.not(await pending('apply-request'), firstRequest, 'and the apply unit asked again')

  await service.put(STATIC)
  const kept = await service.confirm('::ffff:192.168.1.20')
  t.equal(kept.address, '192.168.1.20', 'confirmed from the new address (IPv4-mapped as the socket reports it)')
  clock.advance(10 * 60_000)
  await service.idle()
  t.equal((await service.get()).settings.mode, 'static', 'a confirmed setting is not reverted')
  await t.rejects(service.confirm('192.168.1.20'), { code: 'NETWORK_NO_TRIAL' }, 'nothing left to confirm')

  // IPv6, spelled differently by the installer and by the socket.
  await service.put({ mode: 'static', address: '2001:0DB8:0000::0020', prefix: 64, dns: [], ntp: [] })
  t.equal((await service.get()).settings.address, '2001:db8::20', 'stored in its canonical spelling')
  t.equal((await service.confirm('2001:db8:0:0::20')).address, '2001:db8::20', 'confirmed from the same address written another way')
  await service.put(STATIC)
  await service.confirm('192.168.1.20')

  // A restart in the middle of a trial keeps its deadline.
  await service.put({ ...STATIC, address: '192.168.1.30' })
  service.stop()
  const restarted = new NetworkService({ dataDir, clock, logger: pino({ level: 'silent' }), trialMs: 5 * 60_000 })
  await restarted.start()
  t.teardown(async () => { restarted.stop(); await restarted.idle() })
  clock.advance(5 * 60_000)
  await restarted.idle()
  t.equal((await restarted.get()).settings.address, '192.168.1.20', 'after a restart the trial still reverts, to the last confirmed static setting')
})
