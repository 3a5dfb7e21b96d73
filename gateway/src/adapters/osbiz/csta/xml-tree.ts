import { XMLParser } from 'fast-xml-parser'

/**
 * A small, typed XML element tree over fast-xml-parser's ordered output. Names are local names (namespace
 * prefixes removed) and lookups ignore case, because CSTA implementations differ in both.
 */
export interface XmlElement {
  name: string
  attributes: Record<string, string>
  children: XmlElement[]
  /** The element's own text (text and CDATA nodes joined), trimmed and entity-decoded. */
  text: string
}

export class XmlSyntaxError extends Error {
  constructor(readonly code: 'XML_PARSE' | 'XML_DOCTYPE', message: string) {
    super(message)
    this.name = 'XmlSyntaxError'
  }
}

const ATTRIBUTE_PREFIX = '@_'
const ATTRIBUTES_KEY = ':@'
const TEXT_KEY = '#text'
const CDATA_KEY = '#cdata'

// Entities stay unexpanded in the parser; we decode only the five predefined ones and character references,
// so no document can make us expand anything it defines itself.
const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: ATTRIBUTE_PREFIX,
  removeNSPrefix: true,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
  processEntities: false,
  htmlEntities: false,
  cdataPropName: CDATA_KEY,
})

type OrderedNode = Record<string, unknown>

/**
 * Far above any CSTA message (tens of elements, a handful of attributes) and far below what makes the parser slow:
 * fast-xml-parser's time per attribute grows with the document (one 62 KB frame with 5,000 attributes held the
 * event loop for up to 880 ms on a desktop core, 5,000 elements with one attribute each 470 ms; a box is several
 * times slower). Counted in one pass before parsing.
 */
const MAX_ATTRIBUTES = 256
const MAX_ELEMENTS = 4096
/** One tag, from < to >: an unterminated 60 KB tag took the parser 100-200 ms unloaded, over 1 s on a busy machine. */
const MAX_TAG_CHARS = 4096

function shapeProblem(text: string): string | undefined {
  let elements = 0
  let attributes = 0
  let inTag = false
  let quote = 0
  let tagStart = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inTag) {
      if (i - tagStart > MAX_TAG_CHARS) return `a tag of more than ${MAX_TAG_CHARS} characters (at character ${tagStart})`
      if (quote !== 0) {
        if (c === quote) quote = 0
      } else if (c === 0x22 || c === 0x27) quote = c
      else if (c === 0x3d) attributes++
      else if (c === 0x3e) inTag = false
    } else if (c === 0x3c) {
      inTag = true
      tagStart = i
      const next = text.charCodeAt(i + 1)
      // Not </end>, <!comment> or <?pi?>.
      if (next !== 0x2f && next !== 0x21 && next !== 0x3f) elements++
    }
  }
  if (attributes > MAX_ATTRIBUTES) return `${attributes} attributes in one document (at most ${MAX_ATTRIBUTES} accepted)`
  if (elements > MAX_ELEMENTS) return `${elements} elements in one document (at most ${MAX_ELEMENTS} accepted)`
  return undefined
}

export function parseXmlDocument(text: string): XmlElement {
  if (/<!DOCTYPE/i.test(text)) throw new XmlSyntaxError('XML_DOCTYPE', 'document type declarations are not accepted')
  const problem = shapeProblem(text)
  if (problem !== undefined) throw new XmlSyntaxError('XML_PARSE', problem)
  let nodes: unknown
  try {
    nodes = parser.parse(text, true)
  } catch (error) {
    throw new XmlSyntaxError('XML_PARSE', error instanceof Error ? error.message : String(error))
  }
  if (!Array.isArray(nodes)) throw new XmlSyntaxError('XML_PARSE', 'parser returned no node list')
  const roots = nodes.filter(isRecord).map(toElement).filter((node): node is XmlElement => node !== undefined)
  if (roots.length !== 1) throw new XmlSyntaxError('XML_PARSE', `expected one root element, found ${roots.length}`)
  const [root] = roots
  if (root === undefined) throw new XmlSyntaxError('XML_PARSE', 'no root element')
  return root
}

function isRecord(value: unknown): value is OrderedNode {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function toElement(node: OrderedNode): XmlElement | undefined {
  const name = Object.keys(node).find((key) => key !== ATTRIBUTES_KEY && key !== TEXT_KEY && key !== CDATA_KEY)
  if (name === undefined) return undefined
  const content = node[name]
  const attributes: Record<string, string> = {}
  const rawAttributes = node[ATTRIBUTES_KEY]
  if (isRecord(rawAttributes)) {
    for (const [key, value] of Object.entries(rawAttributes)) {
      if (typeof value === 'string') attributes[key.slice(ATTRIBUTE_PREFIX.length)] = decodeEntities(value)
    }
  }
  const children: XmlElement[] = []
  const texts: string[] = []
  if (Array.isArray(content)) {
    for (const child of content) {
      if (!isRecord(child)) continue
      const childText = child[TEXT_KEY]
      if (typeof childText === 'string') {
        texts.push(decodeEntities(childText))
        continue
      }
      const cdata = child[CDATA_KEY]
      if (Array.isArray(cdata)) {
        for (const part of cdata) if (isRecord(part) && typeof part[TEXT_KEY] === 'string') texts.push(part[TEXT_KEY])
        continue
      }
      const element = toElement(child)
      if (element !== undefined) children.push(element)
    }
  }
  return { name, attributes, children, text: texts.join('').trim() }
}

const PREDEFINED_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }

function decodeEntities(value: string): string {
  if (!value.includes('&')) return value
  return value.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, entity: string) => {
    if (entity.startsWith('#')) {
      const code = entity[1] === 'x' ? Number.parseInt(entity.slice(2), 16) : Number.parseInt(entity.slice(1), 10)
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole
    }
    return PREDEFINED_ENTITIES[entity] ?? whole
  })
}

// --- Navigation -------------------------------------------------------------------------------------------

function sameName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}

export function childElement(parent: XmlElement, ...names: string[]): XmlElement | undefined {
  for (const name of names) {
    const found = parent.children.find((child) => sameName(child.name, name))
    if (found !== undefined) return found
  }
  return undefined
}

/** Depth-first search, the element itself excluded. */
export function findDescendant(parent: XmlElement, ...names: string[]): XmlElement | undefined {
  for (const child of parent.children) {
    if (names.some((name) => sameName(child.name, name))) return child
    const deeper = findDescendant(child, ...names)
    if (deeper !== undefined) return deeper
  }
  return undefined
}

export function findDescendants(parent: XmlElement, name: string): XmlElement[] {
  const found: XmlElement[] = []
  for (const child of parent.children) {
    if (sameName(child.name, name)) found.push(child)
    else found.push(...findDescendants(child, name))
  }
  return found
}

// --- Building and serialising -----------------------------------------------------------------------------

export function xmlElement(
  name: string,
  content?: string | ReadonlyArray<XmlElement | undefined>,
  attributes: Record<string, string> = {},
): XmlElement {
  return {
    name,
    attributes,
    children: Array.isArray(content) ? content.filter((child): child is XmlElement => child !== undefined) : [],
    text: typeof content === 'string' ? content : '',
  }
}

const XML_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/

export function serializeXml(root: XmlElement): string {
  return `<?xml version="1.0" encoding="UTF-8"?>${serializeElement(root)}`
}

function serializeElement(element: XmlElement): string {
  if (!XML_NAME.test(element.name)) throw new Error(`invalid XML element name ${JSON.stringify(element.name)}`)
  let attributes = ''
  for (const [key, value] of Object.entries(element.attributes)) {
    if (!XML_NAME.test(key)) throw new Error(`invalid XML attribute name ${JSON.stringify(key)}`)
    attributes += ` ${key}="${escapeXml(value)}"`
  }
  const inner = escapeXml(element.text) + element.children.map(serializeElement).join('')
  return inner === '' ? `<${element.name}${attributes}/>` : `<${element.name}${attributes}>${inner}</${element.name}>`
}

/** Escapes markup characters and drops characters XML 1.0 cannot carry at all. */
export function escapeXml(value: string): string {
  return value
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;')
}
