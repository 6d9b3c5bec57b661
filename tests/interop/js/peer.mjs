// An independent libp2p implementation (js-libp2p) meeting a Trục node:
// TCP + pnet (optional) + Noise + yamux, then identify, ping and one
// /truc/sync/1 heads request (docs/overlay.md), all on one connection.
//
//   node --import ./polyfill.mjs peer.mjs --seed HEX [--psk FILE]
//        (--dial MULTIADDR/p2p/ID | --listen MULTIADDR --expect ID) [--refused] [--timeout MS]
//
// --dial: this peer opens the connection. --listen: it waits for the node to
// dial it (at its directory address) and runs the exchange on that inbound
// connection. --refused: the run succeeds only if the node refuses us.
// Prints one JSON object per line; exit 0 on the expected outcome, 1 otherwise.

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { readFileSync } from 'node:fs'

const SYNC = '/truc/sync/1'

function args (argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '')
    if (name === 'refused') out.refused = true
    else out[name] = argv[++i]
  }
  return out
}

function say (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

const hex = (bytes) => Buffer.from(bytes).toString('hex')

// --- canonical CBOR (RFC 7049 length-first map order, as protocol/cbor.py writes it) ---

function head (major, n) {
  if (n < 24) return [(major << 5) | n]
  if (n < 0x100) return [(major << 5) | 24, n]
  if (n < 0x10000) return [(major << 5) | 25, n >> 8, n & 0xff]
  if (n < 0x100000000) return [(major << 5) | 26, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]
  throw new Error('integer too large for this encoder')
}

function encode (value) {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return Uint8Array.from(head(0, value))
  if (value instanceof Uint8Array) return Uint8Array.from([...head(2, value.length), ...value])
  if (typeof value === 'string') {
    const utf8 = new TextEncoder().encode(value)
    return Uint8Array.from([...head(3, utf8.length), ...utf8])
  }
  if (Array.isArray(value)) return Uint8Array.from([...head(4, value.length), ...value.flatMap((v) => [...encode(v)])])
  const entries = Object.entries(value).map(([k, v]) => [encode(k), encode(v)])
  entries.sort(([a], [b]) => a.length - b.length || Buffer.compare(Buffer.from(a), Buffer.from(b)))
  return Uint8Array.from([...head(5, entries.length), ...entries.flatMap(([k, v]) => [...k, ...v])])
}

function decode (bytes) {
  let at = 0
  function item () {
    const first = bytes[at++]
    const major = first >> 5
    let n = first & 0x1f
    if (n === 24) n = bytes[at++]
    else if (n === 25) { n = (bytes[at] << 8) | bytes[at + 1]; at += 2 } else if (n === 26) { n = bytes.readUInt32BE(at); at += 4 } else if (n === 27) { n = Number(bytes.readBigUInt64BE(at)); at += 8 } else if (n > 27) throw new Error('indefinite lengths are not canonical')
    switch (major) {
      case 0: return n
      case 1: return -1 - n
      case 2: { const v = bytes.subarray(at, at + n); at += n; return hex(v) }
      case 3: { const v = bytes.subarray(at, at + n).toString('utf8'); at += n; return v }
      case 4: return Array.from({ length: n }, item)
      case 5: { const m = {}; for (let i = 0; i < n; i++) { const k = item(); m[k] = item() } return m }
      case 7: return n === 22 ? null : n === 21 ? true : n === 20 ? false : undefined
      default: throw new Error(`CBOR major type ${major} not expected here`)
    }
  }
  const v = item()
  if (at !== bytes.length) throw new Error(`${bytes.length - at} bytes after the CBOR item`)
  return v
}

// --- request/response framing: one unsigned-varint-length-prefixed message each way ---

function varint (n) {
  const out = []
  do { out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0)); n = Math.floor(n / 128) } while (n > 0)
  return out
}

async function request (connection, protocol, body, signal) {
  const stream = await connection.newStream(protocol, { signal })
  await stream.sink([Uint8Array.from([...varint(body.length), ...body])])
  let buf = Buffer.alloc(0)
  for await (const chunk of stream.source) {
    buf = Buffer.concat([buf, Buffer.from(chunk.subarray())])
    let len = 0; let shift = 0; let i = 0
    for (; i < buf.length; i++) {
      len += (buf[i] & 0x7f) * 2 ** shift
      shift += 7
      if ((buf[i] & 0x80) === 0) break
    }
    if (i < buf.length && buf.length >= i + 1 + len) return buf.subarray(i + 1, i + 1 + len)
  }
  throw new Error('stream ended before a whole response arrived')
}

// --- the exchange ---

async function exchange (node, connection, signal) {
  const id = await node.services.identify.identify(connection, { signal })
  say('identify', { agent: id.agentVersion, protocol_version: id.protocolVersion, protocols: id.protocols, peer: id.peerId.toString() })
  const rtt = await node.services.ping.ping(connection.remotePeer, { signal })
  say('ping', { rtt_ms: rtt })
  const body = encode({ v: 1, op: 'heads' })
  const answer = decode(await request(connection, SYNC, body, signal))
  say('sync', { request: hex(body), response: answer })
  say('connection', { direction: connection.direction, remote: connection.remotePeer.toString(), open: node.getConnections(connection.remotePeer).length })
}

async function main () {
  const a = args(process.argv.slice(2))
  const timeout = Number(a.timeout ?? 20000)
  const signal = AbortSignal.timeout(timeout)
  const privateKey = await generateKeyPairFromSeed('Ed25519', Buffer.from(a.seed, 'hex'))
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: a.listen ? [a.listen] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(a.psk ? { connectionProtector: preSharedKey({ psk: readFileSync(a.psk) }) } : {}),
    // identify runs once, by exchange(): on its own on connection open it races ours (1 outbound stream allowed)
    services: { identify: identify({ runOnConnectionOpen: false }), ping: ping() }
  })
  say('started', { peer: node.peerId.toString(), listen: node.getMultiaddrs().map(String), pnet: Boolean(a.psk) })
  let connection
  let stage = 'connect'
  try {
    if (a.dial) {
      const addr = multiaddr(a.dial)
      connection = await node.dial(addr, { signal })
      // js-libp2p 2.10 does not itself refuse a Noise identity other than the dialled one
      if (connection.remotePeer.toString() !== addr.getPeerId()) throw new Error(`dialled ${addr.getPeerId()}, Noise says ${connection.remotePeer}`)
    } else {
      connection = await new Promise((resolve, reject) => {
        signal.addEventListener('abort', () => reject(new Error(`no connection from ${a.expect} within ${timeout} ms`)))
        node.addEventListener('connection:open', (evt) => {
          if (evt.detail.remotePeer.toString() === a.expect) resolve(evt.detail)
        })
      })
    }
    say('connected', { direction: connection.direction, remote: connection.remotePeer.toString() })
    stage = 'exchange'
    await exchange(node, connection, signal)
    say(a.refused ? 'not_refused' : 'done')
    await node.stop()
    process.exit(a.refused ? 1 : 0)
  } catch (err) {
    say(a.refused ? 'refused' : 'failed', { stage, error: `${err.name}: ${err.message}`, connection_status: connection?.status ?? null })
    await node.stop().catch(() => {})
    process.exit(a.refused ? 0 : 1)
  }
}

main().catch((err) => { say('crashed', { error: String(err?.stack ?? err) }); process.exit(2) })
