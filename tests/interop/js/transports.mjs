// centrifuge-js over the fallback transports, with WebSocket left out of its
// transport list: HTTP-streaming or SSE, each with bidirectional emulation
// (commands after the first go to the /emulation endpoint).
//
// Run by the Rust harness (tests/interop/main.rs). Inputs:
//
//   STARLING_HTTP_URL        http://HOST:PORT of the node's client plane
//   STARLING_TRANSPORT       "http_stream" or "sse"
//   STARLING_ENCODING        "json" or "protobuf" (protobuf: http_stream only)
//   STARLING_TOKEN_ALICE     HS256 connection tokens
//   STARLING_TOKEN_BOB
//   STARLING_HMAC_SECRET     signs the subscription tokens minted here
//   STARLING_CHANNEL_PREFIX  unique per run
//
// One PASS line per check; the first failure prints FAIL and exits 1.

import { isDeepStrictEqual } from 'node:util';
import { EventSource } from 'eventsource';
import { Recorder, env, expect, passed, record, run, short, subscriptionToken, WAIT_MS } from './harness.mjs';

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'error'];

async function main() {
  const base = env('STARLING_HTTP_URL');
  const transport = env('STARLING_TRANSPORT');
  const encoding = env('STARLING_ENCODING');
  expect(transport === 'http_stream' || transport === 'sse', `unknown transport ${transport}`);
  const protobuf = encoding === 'protobuf';
  const { Centrifuge } = protobuf ? await import('centrifuge/build/protobuf') : await import('centrifuge');
  const secret = env('STARLING_HMAC_SECRET');
  const room = `${env('STARLING_CHANNEL_PREFIX')}-room`;
  // Protobuf mode carries publication data as bytes: the JSON text here.
  const make = (value) => (protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value);
  const same = (got, value) => (protobuf
    ? got instanceof Uint8Array && Buffer.from(got).equals(Buffer.from(make(value)))
    : isDeepStrictEqual(got, value));
  console.log(`centrifuge-js over ${transport} (${encoding}) against ${base}, channel '${room}'`);

  const client = (user) => {
    const c = new Centrifuge([{ transport, endpoint: `${base}/connection/${transport}` }], {
      token: env(`STARLING_TOKEN_${user.toUpperCase()}`),
      timeout: WAIT_MS,
      emulationEndpoint: `${base}/emulation`,
      fetch: globalThis.fetch,
      readableStream: globalThis.ReadableStream,
      eventsource: EventSource,
    });
    const rec = new Recorder(user);
    record(c, rec, CLIENT_EVENTS);
    return { c, rec, user };
  };
  const alice = client('alice');
  const bob = client('bob');
  try {
    // 1. connect over the fallback only
    for (const { c, rec, user } of [alice, bob]) {
      c.connect();
      const [ctx] = await rec.wait('connected', 'connected', { failOn: ['disconnected'] });
      expect(ctx.transport === transport, `${user} connected over ${ctx.transport}, want ${transport}`);
    }
    passed('1 connect', `alice and bob connected over ${transport}`);

    // 2. subscribe: the subscribe command goes through /emulation
    const subs = {};
    for (const { c, user } of [alice, bob]) {
      const sub = c.newSubscription(room, { getToken: async (ctx) => subscriptionToken(secret, user, ctx.channel) });
      const rec = new Recorder(`${user} ${room}`);
      record(sub, rec, SUB_EVENTS);
      sub.subscribe();
      await rec.wait('subscribed', 'subscribed', { failOn: ['unsubscribed'] });
      subs[user] = { sub, rec };
    }
    passed('2 subscribe', `both subscribed to ${room}`);

    // 3. publish from alice, received by both; then from bob
    const first = { text: 'hello', n: 1 };
    const aMark = subs.alice.rec.mark();
    const bMark = subs.bob.rec.mark();
    await alice.c.publish(room, make(first));
    const [toBob] = await subs.bob.rec.wait('alice\'s publication', 'publication', { since: bMark });
    const [toAlice] = await subs.alice.rec.wait('her own publication', 'publication', { since: aMark });
    expect(same(toBob.data, first) && same(toAlice.data, first),
      `publication data ${short(toBob.data)} / ${short(toAlice.data)}, want ${short(first)}`);
    expect(toBob.offset === toAlice.offset && toBob.offset > 0, `offsets ${toBob.offset} / ${toAlice.offset}`);
    const second = { text: 'hi back', n: 2 };
    await bob.c.publish(room, make(second));
    const [reply] = await subs.alice.rec.wait('bob\'s publication', 'publication', { since: aMark, count: 2 })
      .then((pubs) => pubs.slice(1));
    expect(same(reply.data, second), `alice got ${short(reply.data)}, want ${short(second)}`);
    expect(reply.offset === toBob.offset + 1, `offset ${reply.offset}, want ${toBob.offset + 1}`);
    passed('3 publish', `offsets ${toBob.offset}, ${reply.offset} delivered to both`);

    // 4. history
    const hist = await alice.c.history(room, { limit: 10 });
    const got = hist.publications.map((p) => p.offset);
    expect(hist.publications.length === 2 && same(hist.publications[0].data, first)
      && same(hist.publications[1].data, second),
    `history offsets ${short(got)}, want the two publications`);
    passed('4 history', `offsets ${got}, epoch ${hist.epoch}`);

    // 5. presence stats
    const stats = await bob.c.presenceStats(room);
    expect(stats.numClients === 2 && stats.numUsers === 2, `presence stats ${short(stats)}, want 2 clients, 2 users`);
    passed('5 presence', `${stats.numClients} clients`);

    // 6. unsubscribe over emulation: alice stops receiving
    subs.alice.sub.unsubscribe();
    await subs.alice.rec.wait('unsubscribed', 'unsubscribed');
    const before = subs.alice.rec.of('publication').length;
    const bMark2 = subs.bob.rec.mark();
    await bob.c.publish(room, make({ text: 'after', n: 3 }));
    await subs.bob.rec.wait('third publication', 'publication', { since: bMark2 });
    expect(subs.alice.rec.of('publication').length === before, 'alice still got a publication after unsubscribing');
    passed('6 unsubscribe', 'alice unsubscribed, bob still receives');
  } finally {
    alice.c.disconnect();
    bob.c.disconnect();
  }
}

await run(main);
