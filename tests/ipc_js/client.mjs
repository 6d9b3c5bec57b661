// A minimal Trục IPC client (docs/ipc.md), written from the document alone.
//
// Frames: u32 big-endian length + a CBOR map. The CBOR traps docs/ipc.md §6 warns about
// are handled here: Uint8Array is not tagged (tagUint8Array: false), objects are plain maps
// (useRecords: false), integers of 2^32 and more are sent as BigInt (else cbor-x would send a
// float, which the node refuses), and 64-bit integers come back as BigInt (times in ms).
import net from 'node:net';
import { Encoder, Decoder } from 'cbor-x';

const enc = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false, variableMapSize: true });
const dec = new Decoder({ useRecords: false, mapsAsObjects: true });
export const CHUNK = 1 << 20;

export class IpcError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

export class TrucClient {
  static connect(path) {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(path);
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new TrucClient(sock));
      });
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, onChunk, onEvent}
    this.closed = false;
    sock.on('data', (data) => this.onData(data));
    sock.on('close', () => {
      this.closed = true;
      for (const p of this.pending.values()) p.reject(new IpcError('closed', 'the node closed the connection'));
      this.pending.clear();
    });
    sock.on('error', () => {});
  }

  onData(data) {
    this.buf = Buffer.concat([this.buf, data]);
    while (this.buf.length >= 4) {
      const n = this.buf.readUInt32BE(0);
      if (this.buf.length < 4 + n) return;
      const msg = dec.decode(this.buf.subarray(4, 4 + n));
      this.buf = this.buf.subarray(4 + n);
      this.route(msg);
    }
  }

  route(msg) {
    const id = Number(msg.id);
    const targets = id === 0 ? [...this.pending.values()] : [this.pending.get(id)];
    for (const p of targets) {
      if (!p) continue;
      if ('event' in msg) p.onEvent?.(msg);
      else if ('file' in msg) p.onChunk?.(Number(msg.file), msg.data);
      else if (msg.ok) p.resolve(msg.result);
      else p.reject(new IpcError(msg.error.code, msg.error.message));
    }
  }

  send(obj) {
    const payload = enc.encode(obj);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(payload.length);
    return new Promise((resolve) => this.sock.write(Buffer.concat([head, payload]), resolve));
  }

  // Call a method. `uploads` maps file index -> Buffer, streamed as upload frames after the request.
  async call(method, params = {}, { onChunk, onEvent, uploads } = {}) {
    const id = this.nextId++;
    const answer = new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (r) => { if (!onEvent || r.subscribed === false) this.pending.delete(id); resolve(r); },
        reject: (e) => { this.pending.delete(id); reject(e); },
        onChunk, onEvent,
      });
    });
    await this.send({ v: 1, id, method, params });
    for (const [index, data] of Object.entries(uploads ?? {})) {
      for (let i = 0; i < data.length; i += CHUNK) {
        await this.send({ v: 1, id, file: Number(index), data: data.subarray(i, i + CHUNK) });
      }
    }
    return answer;
  }

  close() {
    this.sock.end();
  }
}
