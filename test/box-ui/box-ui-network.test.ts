import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { screenshot } from '../helpers/browser.js'
import { sshPublicKey } from '../appliance/fixtures/ssh-keys.js'
import { claimBox, openBoxPage, PHONE, startBox } from './fixtures/box-harness.js'

const PASSWORD = 'correct horse battery'

t.test('Network page: a static address saved as a trial, a wrong one explained on its field, SSH on with a key', async (t) => {
  const box = await startBox()
  t.teardown(() => box.close())
  const page = await openBoxPage(t, box)
  await claimBox(page, box, PASSWORD)

  await page.getByRole('link', { name: 'Network' }).click()
  await page.getByRole('heading', { name: 'Network' }).waitFor()
  t.ok(await page.getByLabel('Automatic (DHCP)').isChecked(), 'DHCP by default')
  await page.getByLabel('Fixed address').check()
  await page.getByLabel('IP address').fill('192.168.1.0')
  await page.getByLabel('Gateway (router)').fill('192.168.1.1')
  await page.getByRole('button', { name: 'Save network settings' }).click()
  const addressError = page.locator('.field', { has: page.getByLabel('IP address') }).getByRole('alert')
  await addressError.waitFor()
  t.match(await addressError.textContent(), /network's own address/, 'a wrong address is explained on its field')
  t.equal(await page.getByLabel('IP address').getAttribute('aria-invalid'), 'true')

  await page.getByLabel('IP address').fill('192.168.1.20')
  await page.getByLabel('DNS servers').fill('192.168.1.1, 9.9.9.9')
  await page.getByRole('button', { name: 'Save network settings' }).click()
  await page.getByText(/The new address is on trial until/).waitFor()
  t.match(await page.getByRole('link', { name: /https:\/\/192\.168\.1\.20/ }).textContent(), 'https://192.168.1.20', 'the page says where to confirm')
  t.match(await readFile(join(box.dataDir, 'network', 'pending', '10-pbxgw.network'), 'utf8'), /Address=192\.168\.1\.20\/24\nGateway=192\.168\.1\.1\nDNS=192\.168\.1\.1\nDNS=9\.9\.9\.9/, 'rendered for the apply unit')
  await page.getByRole('button', { name: 'Keep this setting' }).click()
  const refusal = page.getByRole('alert').filter({ hasText: /Open the setup page at the new address/ })
  await refusal.waitFor()
  t.pass('keeping it from the old address is refused in words')
  await screenshot(page, 'box-network-trial-1280')

  await page.getByLabel('Allow SSH').check()
  await page.getByRole('button', { name: 'Save SSH settings' }).click()
  const keyError = page.locator('.field', { has: page.getByLabel('Public keys') }).getByRole('alert')
  await keyError.waitFor()
  t.match(await keyError.textContent(), /at least one public key/, 'SSH without a key is refused on the field')
  const key = await sshPublicKey('ed25519')
  await page.getByLabel('Public keys').fill(key)
  await page.getByRole('button', { name: 'Save SSH settings' }).click()
  await page.getByText(/SSH is on for 1 key/).waitFor()
  t.equal(await readFile(join(box.dataDir, 'ssh', 'authorized_keys'), 'utf8'), `${key}\n`, 'the key is stored for the apply unit')
  await page.setViewportSize(PHONE)
  await screenshot(page, 'box-network-390')
})
