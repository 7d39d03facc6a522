// A plain EventSource client (the npm `eventsource` package) on Starling's
// unidirectional SSE endpoint resumes after a dropped connection without a
// gap: its browser-style automatic reconnect sends Last-Event-ID, whose value
// (set by the server on every event) holds the stream position of every
// subscribed room.
//
// Run by the Rust harness (tests/interop/main.rs). Inputs:
//
//   STARLING_HTTP_URL        http://HOST:PORT of the node's client plane
//   STARLING_API_URL         http://HOST:PORT/api, the server API
//   STARLING_API_KEY         its key; publications go in through it, as from a backend
//   STARLING_HMAC_SECRET     signs the connection token minted here
//   STARLING_CHANNEL_PREFIX  unique per run
//
// The connection token's `channels` claim subscribes the client server-side
// to two rooms: one whose history (100) outlives the gap, and one in the
// `smallhistory` namespace (2 kept) that cannot cover it.

import { EventSource } from 'eventsource';
import { Recorder, env, expect, gate, hs256, passed, run, short } from './harness.mjs';

const MISSED = 5;

async function main() {
  const base = env('STARLING_HTTP_URL');
  const api = env('STARLING_API_URL');
  const key = env('STARLING_API_KEY');
  const prefix = env('STARLING_CHANNEL_PREFIX');
  const feed = `${prefix}-feed`;
  const small = `smallhistory:${prefix}`;
  const token = hs256(env('STARLING_HMAC_SECRET'), { sub: 'carol', channels: [feed, small] });

  const publish = async (channel, data) => {
    const response = await fetch(`${api}/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': key, 'Content-Type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    const body = await response.json();
    expect(response.status === 200 && !body.error, `publish to ${channel}: ${response.status} ${short(body)}`);
    return body.result;
  };

  // Every request EventSource makes goes through here: it records the
  // Last-Event-ID sent, can hold a reconnect until the test lets it go, and
  // can cut the response the way a network failure does (the body errors with
  // undici's "terminated", and the socket is closed).
  const lastEventIds = [];
  let hold = null;
  let current = null;
  const requested = new Recorder('requests');
  const gatedFetch = async (url, init) => {
    lastEventIds.push(new Headers(init.headers).get('last-event-id'));
    requested.add('request', lastEventIds.length);
    if (hold !== null) {
      await hold.promise;
    }
    const response = await fetch(url, init);
    const upstream = response.body.getReader();
    let dropped = false;
    let controller = null;
    const body = new ReadableStream({
      start(c) {
        controller = c;
      },
      async pull(c) {
        try {
          const { done, value } = await upstream.read();
          if (dropped) {
            return;
          }
          if (done) {
            c.close();
          } else {
            c.enqueue(value);
          }
        } catch (e) {
          if (!dropped) {
            c.error(e);
          }
        }
      },
      cancel(reason) {
        return upstream.cancel(reason);
      },
    });
    current = {
      drop() {
        dropped = true;
        controller.error(new TypeError('terminated'));
        upstream.cancel().catch(() => {});
      },
    };
    return new Response(body, { status: response.status, headers: response.headers });
  };

  const url = new URL(`${base}/connection/uni_sse`);
  url.searchParams.append('cf_connect', JSON.stringify({ token }));
  const rec = new Recorder('eventsource');
  const es = new EventSource(url, { fetch: gatedFetch });
  es.onmessage = (e) => rec.add('message', { push: JSON.parse(e.data), id: e.lastEventId });
  es.addEventListener('ping', () => rec.add('ping', {}));
  es.onerror = (e) => rec.add('error', { message: e.message, code: e.code });

  try {
    // 1. connect: the first event is the connect push with both rooms
    const [first] = await rec.wait('connect push', 'message', { failOn: ['error'] });
    const connect = first.push.connect;
    expect(connect && connect.client, `first event is not a connect push: ${short(first.push)}`);
    for (const channel of [feed, small]) {
      const sub = connect.subs?.[channel];
      expect(sub && sub.recoverable && sub.epoch, `connect push has no recoverable ${channel}: ${short(connect.subs)}`);
      expect(!sub.was_recovering, `a first connect recovered ${channel}: ${short(sub)}`);
    }
    expect(first.id !== '', 'the connect event has no id');
    passed('1 connect', `client ${connect.client}, subs ${Object.keys(connect.subs).join(', ')}, id ${first.id}`);

    // 2. live publications arrive as pub pushes, each event with a new id
    let mark = rec.mark();
    const live = [];
    for (let n = 1; n <= 3; n += 1) {
      live.push(await publish(feed, { phase: 'live', n }));
    }
    await publish(small, { phase: 'live', n: 1 });
    const pubs = await rec.wait('4 live publications', 'message', { since: mark, count: 4 });
    const feedPubs = pubs.filter((m) => m.push.channel === feed);
    expect(feedPubs.length === 3 && feedPubs.every((m, i) => m.push.pub?.data?.n === i + 1
      && m.push.pub.offset === live[i].offset),
    `feed events ${short(feedPubs.map((m) => m.push))}`);
    const ids = new Set(pubs.map((m) => m.id));
    expect(ids.size === 4, `events share ids: ${short([...ids])}`);
    const lastId = es.lastEventId ?? pubs[3].id;
    const lastOffset = feedPubs[2].push.pub.offset;
    passed('2 live', `feed offsets ${feedPubs.map((m) => m.push.pub.offset)}, last id ${pubs[3].id}`);

    // 3. drop the connection; publish while the client is away
    hold = gate();
    mark = rec.mark();
    current.drop();
    await rec.wait('error event after the drop', 'error', { since: mark });
    const missed = [];
    for (let n = 1; n <= MISSED; n += 1) {
      missed.push(await publish(feed, { phase: 'missed', n }));
    }
    for (let n = 2; n <= 4; n += 1) {
      await publish(small, { phase: 'missed', n });
    }
    await requested.wait('the automatic reconnect', 'request', { count: 2 });
    passed('3 drop', `${MISSED} publications to ${feed} and 3 to ${small} while away`);

    // 4. the reconnect resumes every room from the Last-Event-ID
    hold.open();
    const [again] = await rec.wait('second connect push', 'message', { since: mark, failOn: [] });
    expect(lastEventIds[1] === pubs[3].id,
      `reconnect sent Last-Event-ID ${short(lastEventIds[1])}, want the last event's id ${pubs[3].id}`);
    const reconnect = again.push.connect;
    expect(reconnect, `first event after reconnect is not a connect push: ${short(again.push)}`);
    const f = reconnect.subs?.[feed];
    expect(f && f.was_recovering && f.recovered, `${feed} did not recover: ${short(f)}`);
    const got = (f.publications ?? []).map((p) => [p.offset, p.data?.n]);
    expect(got.length === MISSED && got.every(([offset, n], i) => offset === lastOffset + 1 + i && n === i + 1)
      && got.every(([offset], i) => offset === missed[i].offset),
    `${feed} recovered ${short(got)}, want offsets ${lastOffset + 1}..${lastOffset + MISSED} with n=1..${MISSED}`);
    const s = reconnect.subs?.[small];
    expect(s && s.was_recovering && !s.recovered, `${small} should report recovered=false: ${short(s)}`);
    passed('4 resume', `${feed} recovered exactly ${got.length} missed (offsets ${got.map(([o]) => o)}); ${small} recovered=false`);

    // 5. live again, nothing replayed twice
    mark = rec.mark();
    const after = await publish(feed, { phase: 'after', n: 1 });
    const [next] = await rec.wait('publication after resume', 'message', { since: mark });
    expect(next.push.channel === feed && next.push.pub?.offset === after.offset && after.offset === lastOffset + MISSED + 1,
      `next event ${short(next.push)}, want offset ${lastOffset + MISSED + 1}`);
    passed('5 live again', `offset ${after.offset} follows without a gap or a duplicate (last id ${lastId ? 'kept' : 'none'})`);
  } finally {
    es.close();
  }
}

await run(main);
