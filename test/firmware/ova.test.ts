import t from 'tap'
import { XMLParser, XMLValidator } from 'fast-xml-parser'
import { ovfDescriptor, ovfManifest } from '../../firmware/image/ova.js'

/** The parts of the parsed descriptor the test reads (fast-xml-parser: attributes as '@name', numbers parsed). */
interface OvfEnvelope {
  References: { File: Record<string, string> }
  DiskSection: { Disk: Record<string, string> }
  VirtualSystem: {
    ProductSection: { Version: string }
    VirtualHardwareSection: { Item: Array<Record<string, unknown>>; 'vmw:Config': Array<Record<string, string>> }
  }
}

t.test('the OVF descriptor names the disk, UEFI firmware, the VM size and escapes what it is given', async (t) => {
  const xml = ovfDescriptor({ name: 'pbx-presence-gateway', version: '1.2.3 <beta> & "rc"', diskFile: 'disk1.vmdk', diskFileBytes: 250_000_000, diskCapacityBytes: 2_686_451_712 })
  t.equal(XMLValidator.validate(xml), true, 'well-formed XML, even with <, & and quotes in the version')
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '@' }).parse(xml) as { Envelope: OvfEnvelope }
  const envelope = doc.Envelope
  t.equal(envelope.References.File['@ovf:href'], 'disk1.vmdk', 'the file reference is the VMDK in the OVA')
  t.equal(envelope.References.File['@ovf:size'], '250000000', 'with its size')
  t.equal(envelope.DiskSection.Disk['@ovf:capacity'], '2686451712', 'the disk capacity the guest sees')
  t.match(envelope.DiskSection.Disk['@ovf:format'], /streamOptimized/, 'a streamOptimized VMDK')
  const hw = envelope.VirtualSystem.VirtualHardwareSection
  const items = hw.Item
  t.equal(items.find((i) => i['rasd:ResourceType'] === 3)?.['rasd:VirtualQuantity'], 2, '2 vCPUs')
  t.equal(items.find((i) => i['rasd:ResourceType'] === 4)?.['rasd:VirtualQuantity'], 1024, '1 GiB')
  t.equal(items.find((i) => i['rasd:ResourceType'] === 17)?.['rasd:HostResource'], 'ovf:/disk/vmdisk1', 'the disk on the SATA controller')
  t.equal(items.find((i) => i['rasd:ResourceType'] === 10)?.['rasd:Connection'], 'LAN', 'one network card')
  const configs = hw['vmw:Config']
  t.ok(configs.some((c) => c['@vmw:key'] === 'firmware' && c['@vmw:value'] === 'efi'), 'UEFI (the image has no BIOS boot loader)')
  t.equal(envelope.VirtualSystem.ProductSection.Version, '1.2.3 <beta> & "rc"', 'the version survives escaping')
})

t.test('the manifest is one SHA256(file)= line per file', async (t) => {
  t.equal(ovfManifest([{ file: 'a.ovf', sha256: 'ab'.repeat(32) }, { file: 'd.vmdk', sha256: 'cd'.repeat(32) }]),
    `SHA256(a.ovf)= ${'ab'.repeat(32)}\nSHA256(d.vmdk)= ${'cd'.repeat(32)}\n`)
})
