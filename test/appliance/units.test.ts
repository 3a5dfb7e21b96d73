import { execFile } from 'node:child_process'
import { readdir } from 'node:fs/promises'
import { resolve } from 'node:path'
import t from 'tap'

/**
 * The units of firmware/systemd/ as this machine's systemd (252, bookworm's) reads them: syntax, known settings and
 * ordering cycles against the real system units (an early apply service ordered before timesyncd once made one).
 * Programs the image installs but this machine lacks (its Node, the pbxgw scripts, agetty) are the only lines allowed.
 */
t.test('systemd-analyze verify finds nothing wrong in the units', async (t) => {
  const dir = resolve('firmware', 'systemd')
  const units = (await readdir(dir)).filter((f) => /\.(service|path)$/.test(f)).map((f) => `./${f}`)
  t.ok(units.length >= 7, `${units.length} units`)
  const output = await new Promise<string>((done, fail) => {
    execFile('systemd-analyze', ['verify', '--man=no', ...units], { cwd: dir, env: { ...process.env, SYSTEMD_LOG_LEVEL: 'notice' } }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') fail(new Error('systemd-analyze is missing: apt-get install -y systemd'))
      else done(`${stdout}${stderr}`)
    })
  })
  const problems = output.split('\n').filter((line) => line.trim() && !/Command (\/opt\/pbx-gateway\/node\/bin\/node|\/usr\/libexec\/(pbxgw|pbx-gateway)\/[a-z-]+|\/usr\/sbin\/agetty) is not executable/.test(line))
  t.same(problems, [], `no problems: ${problems.slice(0, 5).join(' | ')}`)
})
