/**
 * The VM image as an OVA for VMware ESXi/Workstation and VirtualBox: a tar holding the OVF descriptor first (the
 * OVF 1.x specification requires it), a manifest of SHA-256 sums, and the disk as a streamOptimized VMDK. The
 * virtual machine boots with UEFI (the image has no BIOS boot loader), 2 vCPUs, 1 GiB and one network card.
 */

export interface OvfInput {
  /** The VM's name in the hypervisor's inventory. */
  name: string
  version: string
  /** The VMDK's file name inside the OVA. */
  diskFile: string
  /** The VMDK file's size in bytes (ovf:size). */
  diskFileBytes: number
  /** The virtual disk's capacity in bytes (what the guest sees). */
  diskCapacityBytes: number
  memoryMiB?: number
  cpus?: number
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c)
}

/** The OVF descriptor (OVF 1.0 envelope, the form ESXi, Workstation and VirtualBox all import). */
export function ovfDescriptor(input: OvfInput): string {
  const memory = input.memoryMiB ?? 1024
  const cpus = input.cpus ?? 2
  const name = escapeXml(input.name)
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:id="disk1" ovf:href="${escapeXml(input.diskFile)}" ovf:size="${input.diskFileBytes}"/>
  </References>
  <DiskSection>
    <Info>The box's disk: EFI system partition, root slots A and B, data</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="disk1" ovf:capacity="${input.diskCapacityBytes}" ovf:capacityAllocationUnits="byte"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The customer LAN, where the PBX is</Info>
    <Network ovf:name="LAN"><Description>The network of the PBX (DHCP by default)</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="${name}">
    <Info>PBX presence gateway ${escapeXml(input.version)}</Info>
    <Name>${name}</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest">
      <Info>Debian GNU/Linux (64-bit)</Info>
    </OperatingSystemSection>
    <ProductSection>
      <Info>What this appliance is</Info>
      <Product>PBX presence gateway</Product>
      <Version>${escapeXml(input.version)}</Version>
      <FullVersion>${escapeXml(input.version)}</FullVersion>
    </ProductSection>
    <VirtualHardwareSection>
      <Info>2 vCPUs, ${memory} MiB, UEFI, one SATA disk, one network card</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>${name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-14</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>${cpus} virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>${cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>${memory} MiB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>${memory}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SATA controller</rasd:Description>
        <rasd:ElementName>SATA controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>vmware.sata.ahci</rasd:ResourceSubType>
        <rasd:ResourceType>20</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>LAN</rasd:Connection>
        <rasd:Description>E1000 ethernet adapter on "LAN"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
      <vmw:Config ovf:required="false" vmw:key="uefi.secureBoot.enabled" vmw:value="false"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`
}

/** The OVA manifest: one "SHA256(file)= hex" line per file, as ovftool writes and checks it. */
export function ovfManifest(sums: ReadonlyArray<{ file: string; sha256: string }>): string {
  return sums.map(({ file, sha256 }) => `SHA256(${file})= ${sha256}\n`).join('')
}
