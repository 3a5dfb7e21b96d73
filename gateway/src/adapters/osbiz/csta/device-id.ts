/**
 * Normalises a CSTA device identifier to the dialing number (extension) the PBX administers.
 * Seen forms (research §1.9): "201", "tel:201;phone-context=dialstring", "N<+4930123420 1>", "+49301234201",
 * "sip:201@pbx". With a configured public prefix ("+49301234"), numbers inside the PBX's own range lose it.
 * Anything unrecognised is returned trimmed, unchanged: an external number stays an external number.
 */
export function normaliseDeviceId(raw: string, devicePrefix?: string): string {
  let id = raw.trim()
  const wrapped = /^N<([^>]*)>/.exec(id)
  if (wrapped?.[1] !== undefined) id = wrapped[1].trim()
  const uri = /^(tel|sips?):(.*)$/i.exec(id)
  if (uri?.[2] !== undefined) {
    const rest = uri[2]
    const user = uri[1]?.toLowerCase() === 'tel' ? rest : (rest.split('@')[0] ?? rest)
    id = (user.split(';')[0] ?? user).trim()
  }
  const compact = id.replace(/[\s\-().]/g, '')
  if (/^\+?[0-9*#]+$/.test(compact)) id = compact
  if (devicePrefix !== undefined && devicePrefix !== '') id = stripPrefix(id, devicePrefix)
  return id === '' ? raw.trim() : id
}

function stripPrefix(id: string, devicePrefix: string): string {
  const prefix = devicePrefix.replace(/[\s\-().]/g, '')
  const forms = [prefix]
  // "+49..." is also dialled as "0049..."
  if (prefix.startsWith('+')) forms.push(`00${prefix.slice(1)}`)
  for (const form of forms) {
    if (id.length > form.length && id.startsWith(form)) return id.slice(form.length)
  }
  return id
}
