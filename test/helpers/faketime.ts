import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'

/**
 * A wrong wall clock for one child process, through libfaketime (Debian package `faketime`, installed by
 * .ci/run). The offset lives in a file the library re-reads on every call, so a test can set the clock wrong and
 * later correct it while the process runs, as an installer fixing NTP would. Monotonic clocks are left alone:
 * timers keep their real durations.
 */
export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'

export interface FakeClock {
  /** Environment to spawn the child with. */
  env: NodeJS.ProcessEnv
  /** Sets the offset, e.g. '-1d', '+2h', '+0'. Takes effect at the child's next clock read. */
  set(offset: string): Promise<void>
}

export async function fakeClock(controlFile: string, offset: string): Promise<FakeClock> {
  if (!existsSync(LIBFAKETIME)) {
    throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime package (apt-get install -y faketime; .ci/run does)`)
  }
  const set = (value: string) => writeFile(controlFile, `${value}\n`)
  await set(offset)
  return {
    env: {
      LD_PRELOAD: LIBFAKETIME,
      FAKETIME_TIMESTAMP_FILE: controlFile,
      FAKETIME_NO_CACHE: '1',
      FAKETIME_DONT_FAKE_MONOTONIC: '1',
    },
    set,
  }
}
