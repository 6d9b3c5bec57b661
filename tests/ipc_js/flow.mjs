// The integrator flow across two real nodes, as docs/ipc.md describes it:
//   node flow.mjs SENDER_SOCKET RECIPIENT_SOCKET SENDER_CODE RECIPIENT_CODE
// Prints one JSON line with what it saw; exits 1 on the first check that fails.
import { createHash, randomBytes } from 'node:crypto';
import { TrucClient, IpcError } from './client.mjs';

const [senderSock, recipientSock, FROM, TO] = process.argv.slice(2);
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const report = {};
function check(ok, what) {
  if (!ok) {
    console.log(JSON.stringify({ failed: what, report }, (k, v) => (typeof v === 'bigint' ? Number(v) : v)));
    process.exit(1);
  }
}
async function until(fn, what, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    check(Date.now() < end, `timed out waiting for ${what}`);
    await sleep(200);
  }
}

const g = await TrucClient.connect(senderSock);
const h = await TrucClient.connect(recipientSock);

const info = await g.call('node.info');
check(info.codes.includes(FROM), 'node.info lists the sender');
check(typeof info.started_at === 'bigint', 'times in ms come back as 64-bit integers (BigInt in cbor-x)');

const events = [];
const sub = await TrucClient.connect(senderSock);
await sub.call('events.subscribe', {}, { onEvent: (e) => events.push(e) });

// Errors are typed.
try {
  await g.call('submit', { from: FROM, to: ['000.00.00.H05'], subject: 'x' });
  check(false, 'an unknown recipient is refused');
} catch (e) {
  check(e instanceof IpcError && e.code === 'unknown_agency', `unknown_agency, got ${e.code}`);
}
try {
  await g.call('directory.lookup', { code: 'ZZZ' });
  check(false, 'ZZZ is not a code');
} catch (e) {
  check(e.code === 'bad_agency_code', `bad_agency_code, got ${e.code}`);
}

// Submit: one small file inline, one large file streamed in upload frames, with an idempotency key.
const small = Buffer.from('Kính gửi: Ủy ban nhân dân', 'utf8');
const large = randomBytes(3 * (1 << 20) + 5);
const params = {
  from: FROM, to: [TO], subject: 'Về việc thử nghiệm từ JavaScript', number: '12', notation: 'VPCP-TH',
  idempotency_key: `js-${Date.now()}`,
  files: [
    { name: 'cong-van.txt', mime: 'text/plain', data: small },
    { name: 'phu-luc.bin', mime: 'application/octet-stream', size: large.length, sha256: sha256(large) },
  ],
};
const { id } = await g.call('submit', params, { uploads: { 1: large } });
check(/^[0-9a-f]{64}$/.test(id), 'submit returns a document id');
const again = await g.call('submit', { ...params, files: [] });
check(again.id === id, 'the same idempotency key returns the same id');
report.id = id;

// The recipient pages its inbox with the one documented rule until the document is there.
let after = 0;
const seen = [];
await until(async () => {
  for (;;) {
    const page = await h.call('inbox.list', { code: TO, after, limit: 2 });
    seen.push(...page.items);
    after = page.next_after;
    if (!page.more) break;
  }
  return seen.some((i) => i.id === id);
}, 'the document in the inbox');
report.inbox_items = seen.length;

// Open it: chunks first, then the answer; every SHA-256 checked.
const parts = new Map();
const doc = await h.call('document.get', { id, code: TO }, {
  onChunk: (file, data) => parts.set(file, Buffer.concat([parts.get(file) ?? Buffer.alloc(0), data])),
});
check(doc.metadata.subject === params.subject && doc.metadata.notation === 'VPCP-TH', 'metadata as sent');
doc.files.forEach((f, i) => check(sha256(parts.get(i) ?? Buffer.alloc(0)) === f.sha256, `file ${f.name} matches its sha256`));
check(parts.get(1).equals(large) && parts.get(0).equals(small), 'files byte for byte');

check((await h.call('inbox.ack', { id, code: TO })).acked === true, 'ack');
check((await h.call('inbox.ack', { id, code: TO })).acked === false, 'a second ack says so');

// Statuses 03..06 from the recipient; the sender may not send 04.
for (const code of ['03', '04', '05', '06']) {
  const s = await h.call('status.send', { id, code, as: TO, note: `trạng thái ${code}` });
  check(s.code === code, `status ${code}`);
}
try {
  await g.call('status.send', { id, code: '04', as: FROM, to: TO });
  check(false, '04 from the sender is refused');
} catch (e) {
  check(e.code === 'not_authorized', `04 from the sender: not_authorized, got ${e.code}`);
}

// The sender tracks it: delivered, every status back.
const track = await until(async () => {
  const t = await g.call('document.track', { id });
  const r = t.recipients[0];
  return r.state === 'delivered' && r.statuses.map((s) => s.code).join(',') === '01,03,04,05,06' ? t : null;
}, 'receipt and statuses at the sender');
report.statuses = track.recipients[0].statuses.map((s) => s.code);
await until(() => events.some((e) => e.event === 'receipt.received' && e.data.doc === id), 'the receipt event');
report.events = [...new Set(events.map((e) => e.event))].sort();

sub.close();
g.close();
h.close();
console.log(JSON.stringify({ ok: true, report }, (k, v) => (typeof v === 'bigint' ? Number(v) : v)));
