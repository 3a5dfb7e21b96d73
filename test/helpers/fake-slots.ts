import { readFile, stat } from 'node:fs/promises'
import type { SlotInstaller } from '../../gateway/src/update/slot-installer.js'

/** The in-process stand-in for RAUC: records what the agent asks, refuses signatures when told to. */
export class FakeSlots implements SlotInstaller {
  readonly calls: string[] = []
  installed: Buffer | undefined
  refuseSignature = false
  constructor(public slot: string) {}
  bundleVersion: string | undefined = '2.0.0'
  async verify(path: string): Promise<{ version: string | undefined }> {
    this.calls.push('verify')
    if (this.refuseSignature) throw new Error('the bundle is not signed by a key this box trusts (rauc info: signature verification failed)')
    await stat(path)
    return { version: this.bundleVersion }
  }

  async install(path: string, onProgress: (p: number, what: string) => void): Promise<void> {
    this.calls.push('install')
    this.installed = await readFile(path)
    onProgress(100, 'Installing done.')
  }

  async bootedSlot(): Promise<string> {
    return this.slot
  }

  async markGood(): Promise<void> {
    this.calls.push('markGood')
  }

  async reboot(): Promise<void> {
    this.calls.push('reboot')
  }
}

