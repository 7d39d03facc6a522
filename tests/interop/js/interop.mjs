// Starling interop checks driven by the real centrifuge-js SDK.
//
// Run by the Rust harness (tests/interop/main.rs) against a live Starling node.
// Inputs come from the environment:
//
//   STARLING_WS_URL          ws://HOST:PORT/connection/websocket
//   STARLING_ENCODING        "json" or "protobuf"
//   STARLING_TOKEN_ALICE     HS256 connection token for user "alice"
//   STARLING_TOKEN_BOB       HS256 connection token for user "bob"
//   STARLING_HMAC_SECRET     the server's client.token.hmac_secret_key; this
//                            script signs its subscription tokens with it
//   STARLING_CHANNEL_PREFIX  unique per run, keeps runs apart
//
// Every check prints one line; the first failing check prints FAIL with what
// was expected and what the SDK reported, and the process exits 1. Nothing
// here sleeps to synchronise: every wait is on an SDK event with a deadline.
//
// The server config lets no one subscribe without a subscription token, so
// subscriptions get theirs the way applications do: the SDK's getToken hook,
// here minting the HS256 JWT locally instead of asking an app backend.

import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import {
  Recorder, WAIT_MS, env, expect, gate, passed, record, run, short, subscriptionToken,
} from './harness.mjs';

const CLIENT_EVENTS = ['connecting', 'connected', 'disconnected', 'error'];
// Client-level events of server-side subscriptions, recorded as "server_<kind>".
const SERVER_SUB_EVENTS = ['subscribed', 'subscribing', 'unsubscribed', 'publication', 'join', 'leave'];
const SUB_EVENTS = ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error'];

// Publication data for the chosen encoding: JSON mode sends and receives
// objects; Protobuf mode sends and receives the JSON text as bytes.
class Payloads {
  constructor(protobuf) {
    this.protobuf = protobuf;
  }

  make(value) {
    return this.protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value;
  }

  same(got, value) {
    if (this.protobuf) {
      return got instanceof Uint8Array && Buffer.from(got).equals(Buffer.from(this.make(value)));
    }
    return isDeepStrictEqual(got, value);
  }

  show(value) {
    return this.protobuf && value instanceof Uint8Array
      ? `bytes(${JSON.stringify(Buffer.from(value).toString('utf8'))})`
      : short(value);
  }
}

// getToken hooks for one user's subscriptions; counts the calls per channel so
// the output shows when the SDK asked for a token.
class Tokens {
  constructor(secret, user) {
    this.secret = secret;
    this.user = user;
    this.calls = new Map();
  }

  hook(channel) {
    return async (ctx) => {
      expect(ctx.channel === channel, `getToken of ${channel} was asked for ${ctx.channel}`);
      this.calls.set(channel, this.count(channel) + 1);
      return subscriptionToken(this.secret, this.user, ctx.channel);
    };
  }

  count(channel) {
    return this.calls.get(channel) ?? 0;
  }
}

// Cuts the client's connection the way a network failure would: the ws
// socket is destroyed without a close frame. The SDK keeps no public handle on
// its socket, so its transport's `_transport` is used; everything after this
// (noticing the loss, reconnecting, recovering) is the SDK's own doing.
function dropTransport(client) {
  const socket = client._transport?._transport;
  expect(socket && typeof socket.terminate === 'function', 'bob has no open ws socket to drop');
  socket.terminate();
}

async function main() {
  const url = env('STARLING_WS_URL');
  const encoding = env('STARLING_ENCODING');
  expect(encoding === 'json' || encoding === 'protobuf',
    `STARLING_ENCODING must be json or protobuf, got ${JSON.stringify(encoding)}`);
  const protobuf = encoding === 'protobuf';
  // The protobuf build is a separate entry point of the same package.
  const { Centrifuge } = protobuf ? await import('centrifuge/build/protobuf') : await import('centrifuge');
  const prefix = env('STARLING_CHANNEL_PREFIX');
  const secret = env('STARLING_HMAC_SECRET');
  const room = `${prefix}-room`;
  const small = `smallhistory:${prefix}`;
  const data = new Payloads(protobuf);
  console.log(`centrifuge-js against ${url} (${encoding}), channels '${room}', '${small}'`);

  const alice = new Centrifuge(url, { token: env('STARLING_TOKEN_ALICE'), websocket: WebSocket, timeout: WAIT_MS });
  const aliceRec = new Recorder('alice');
  record(alice, aliceRec, CLIENT_EVENTS);
  record(alice, aliceRec, SERVER_SUB_EVENTS, 'server_');

  // bob's getData runs before each connection attempt (after a drop too):
  // while `bobHold` is set, bob stays away until the test opens it.
  let bobHold = null;
  const bob = new Centrifuge(url, {
    token: env('STARLING_TOKEN_BOB'),
    websocket: WebSocket,
    timeout: WAIT_MS,
    getData: async () => {
      if (bobHold !== null) {
        await bobHold.promise;
      }
      return null;
    },
  });
  const bobRec = new Recorder('bob');
  record(bob, bobRec, CLIENT_EVENTS);
  record(bob, bobRec, SERVER_SUB_EVENTS, 'server_');

  const ctx = {
    alice,
    aliceRec,
    aliceTokens: new Tokens(secret, 'alice'),
    bob,
    bobRec,
    bobTokens: new Tokens(secret, 'bob'),
    prefix,
    room,
    small,
    data,
  };
  try {
    await checks(ctx, (hold) => {
      bobHold = hold;
    });
  } finally {
    alice.disconnect();
    bob.disconnect();
  }
}

async function checks(
  { alice, aliceRec, aliceTokens, bob, bobRec, bobTokens, prefix, room, small, data },
  setBobHold,
) {
  // 1. connect
  alice.connect();
  const [aConn] = await aliceRec.wait('connected event', 'connected', { failOn: ['disconnected'] });
  expect(Boolean(aConn.client), `alice connected without a client id: ${short(aConn)}`);
  const aliceId = aConn.client;
  bob.connect();
  const [bConn] = await bobRec.wait('connected event', 'connected', { failOn: ['disconnected'] });
  expect(Boolean(bConn.client), `bob connected without a client id: ${short(bConn)}`);
  expect(bConn.client !== aliceId, `alice and bob got the same client id ${aliceId}`);
  let bobId = bConn.client;
  passed('1 connect', `alice client=${aliceId} bob client=${bobId}`);

  // 10. no token, no subscription: nothing in the config lets a client
  // subscribe on its own, so the server refuses with 103 (permission denied)
  // and the SDK, as for any permanent subscribe error, ends the subscription.
  const bare = `${prefix}-notoken`;
  const bareSub = alice.newSubscription(bare);
  const bareRec = new Recorder(`alice ${bare}`);
  record(bareSub, bareRec, SUB_EVENTS);
  bareSub.subscribe();
  const [refused] = await bareRec.wait('unsubscribed (refused)', 'unsubscribed', { failOn: ['subscribed'] });
  expect(refused.code === 103,
    `subscribing to ${bare} without a token ended with ${short(refused)}, want code 103`);
  passed('10 token required', `${bare} without a token: unsubscribed ${refused.code} '${refused.reason}'`);

  // 2. subscribe: alice first, so bob's join reaches an already subscribed alice.
  const aRoom = alice.newSubscription(room, { getToken: aliceTokens.hook(room) });
  const aRoomRec = new Recorder(`alice ${room}`);
  record(aRoom, aRoomRec, SUB_EVENTS);
  aRoom.subscribe();
  await aRoomRec.wait('subscribed event', 'subscribed', { failOn: ['unsubscribed'] });
  const bRoom = bob.newSubscription(room, { getToken: bobTokens.hook(room) });
  const bRoomRec = new Recorder(`bob ${room}`);
  record(bRoom, bRoomRec, SUB_EVENTS);
  bRoom.subscribe();
  const [bSub] = await bRoomRec.wait('subscribed event', 'subscribed', { failOn: ['unsubscribed'] });
  expect(bSub.channel === room, `bob's subscribed event names channel ${bSub.channel}, want ${room}`);
  expect(bSub.recoverable && bSub.streamPosition && bSub.streamPosition.epoch,
    `force_recovery is on, but bob's subscribe is not recoverable with an epoch: ${short(bSub)}`);
  const epoch = bSub.streamPosition.epoch;
  const calls = [aliceTokens.count(room), bobTokens.count(room)];
  expect(calls[0] === 1 && calls[1] === 1, `getToken calls for ${room} (alice, bob): ${calls}, want 1,1`);
  passed('2 subscribe', `both subscribed to ${room} with getToken (recoverable, epoch=${epoch})`);

  // 3a. join: force_push_join_leave makes the server push bob's join to alice.
  const [join] = await aRoomRec.wait('join of bob', 'join', { pred: (c) => c.info.client === bobId });
  expect(join.info.user === 'bob', `bob's join carries user ${join.info.user}, want bob`);
  passed('3 join', `alice saw bob join (client=${join.info.client}, user=${join.info.user})`);

  // 4. publish from alice, bob receives exactly that data with an offset.
  const hello = { text: 'hello', n: 1 };
  await alice.publish(room, data.make(hello));
  const [pub] = await bRoomRec.wait('publication n=1', 'publication');
  expect(data.same(pub.data, hello), `bob got data ${data.show(pub.data)}, want ${data.show(data.make(hello))}`);
  expect(pub.offset > 0, `publication has no offset: ${short(pub)}`);
  const helloOffset = pub.offset;
  passed('4 publish', `bob received ${data.show(pub.data)} at offset ${helloOffset}`);

  // 5. history
  let hist = await alice.history(room, { limit: 10 });
  expect(hist.publications.length === 1,
    `history has ${hist.publications.length} publications, want 1: ${short(hist)}`);
  expect(data.same(hist.publications[0].data, hello),
    `history data ${data.show(hist.publications[0].data)}, want ${data.show(data.make(hello))}`);
  expect(hist.publications[0].offset === helloOffset,
    `history offset ${hist.publications[0].offset}, bob saw ${helloOffset}`);
  expect(hist.offset === helloOffset, `history top offset ${hist.offset}, want ${helloOffset}`);
  expect(hist.epoch === epoch, `history epoch ${hist.epoch}, subscribe said ${epoch}`);
  passed('5 history', `1 publication at offset ${helloOffset}, top offset ${hist.offset}, epoch ${hist.epoch}`);

  // 6. presence + presence stats
  const pres = await alice.presence(room);
  const got = Object.fromEntries(Object.entries(pres.clients ?? {}).map(([id, info]) => [id, info.user]));
  expect(isDeepStrictEqual(got, { [aliceId]: 'alice', [bobId]: 'bob' }),
    `presence ${short(got)}, want ${short({ [aliceId]: 'alice', [bobId]: 'bob' })}`);
  for (const [id, info] of Object.entries(pres.clients)) {
    expect(info.client === id, `presence entry ${id} carries client ${info.client}`);
  }
  const stats = await bob.presenceStats(room);
  expect(stats.numClients === 2 && stats.numUsers === 2,
    `presence_stats ${short(stats)}, want 2 clients, 2 users`);
  passed('6 presence', `clients ${short(got)}; stats ${stats.numClients} clients, ${stats.numUsers} users`);

  // 7. recovery after a dropped connection
  const bobMark = bobRec.mark();
  const subMark = bRoomRec.mark();
  const hold = gate();
  setBobHold(hold);
  const tokenCalls = bobTokens.count(room);
  dropTransport(bob);
  await bobRec.wait('connecting after the drop', 'connecting', { since: bobMark });
  await bRoomRec.wait('subscribing after the drop', 'subscribing', { since: subMark });
  const missed = [2, 3, 4].map((n) => ({ text: 'missed', n }));
  for (const value of missed) {
    await alice.publish(room, data.make(value));
  }
  // Only now may bob come back; it must not have done so already.
  expect(bob.state === 'connecting', `bob is ${bob.state} while it should be away`);
  setBobHold(null);
  hold.open();
  const [bConn2] = await bobRec.wait('reconnected', 'connected', { since: bobMark, failOn: ['disconnected'] });
  bobId = bConn2.client;
  const [resub] = await bRoomRec.wait('resubscribed', 'subscribed', { since: subMark, failOn: ['unsubscribed'] });
  expect(resub.wasRecovering, `bob's resubscribe did not try to recover: ${short(resub)}`);
  expect(resub.recovered, `bob's resubscribe was not recovered: ${short(resub)}`);
  await bRoomRec.wait('3 recovered publications', 'publication', { since: subMark, count: 3 });
  // A marker published after the recovery bounds what bob may have got:
  // anything besides the 3 missed + marker is a duplicate or a stray.
  const marker = { text: 'after', n: 5 };
  await alice.publish(room, data.make(marker));
  await bRoomRec.wait('marker publication n=5', 'publication',
    { pred: (c) => data.same(c.data, marker), since: subMark });
  const pubs = bRoomRec.of('publication', subMark);
  const wanted = [...missed, marker];
  expect(pubs.length === wanted.length,
    `bob got ${pubs.length} publications after the drop, want ${wanted.length}: ${pubs.map((p) => `${p.offset}:${data.show(p.data)}`).join(', ')}`);
  wanted.forEach((value, i) => {
    expect(data.same(pubs[i].data, value),
      `publication #${i} after the drop is ${data.show(pubs[i].data)}, want ${data.show(data.make(value))}`);
    expect(pubs[i].offset === helloOffset + 1 + i,
      `publication #${i} after the drop has offset ${pubs[i].offset}, want ${helloOffset + 1 + i}`);
  });
  // The SDK keeps a subscription token it got until the server says it
  // expired, so the resubscribe may reuse it; either way the server took it.
  const fetched = bobTokens.count(room) - tokenCalls;
  passed('7 recovery',
    `bob reconnected as ${bobId}, recovered=true, got offsets ${pubs.slice(0, 3).map((p) => p.offset)} ` +
    `once each, in order (getToken calls on resubscribe: ${fetched})`);

  // 3b. leave: bob unsubscribes, alice sees the leave of bob's current client.
  const leaveMark = aRoomRec.mark();
  bRoom.unsubscribe();
  const [leave] = await aRoomRec.wait('leave of bob', 'leave',
    { pred: (c) => c.info.client === bobId, since: leaveMark });
  expect(leave.info.user === 'bob', `bob's leave carries user ${leave.info.user}, want bob`);
  passed('3 leave', `alice saw bob leave (client=${leave.info.client}, user=${leave.info.user})`);

  // 8. personal channel: a server-side subscription the SDK reports itself.
  const [personal] = await aliceRec.wait('server-side subscribed to #alice', 'server_subscribed',
    { pred: (c) => c.channel === '#alice' });
  await bobRec.wait('server-side subscribed to #bob', 'server_subscribed', { pred: (c) => c.channel === '#bob' });
  passed('8 personal channel', `alice server-side subscribed to ${personal.channel}, bob to #bob`);

  // 9. smallhistory keeps the last 2 of 3.
  const sSub = alice.newSubscription(small, { getToken: aliceTokens.hook(small) });
  const sRec = new Recorder(`alice ${small}`);
  record(sSub, sRec, SUB_EVENTS);
  sSub.subscribe();
  await sRec.wait('subscribed event', 'subscribed', { failOn: ['unsubscribed'] });
  const values = [1, 2, 3].map((n) => ({ text: 'small', n }));
  for (const value of values) {
    await alice.publish(small, data.make(value));
  }
  const seen = await sRec.wait('3 publications', 'publication', { count: 3 });
  const offsets = seen.map((c) => c.offset);
  hist = await alice.history(small, { limit: 10 });
  const kept = hist.publications.map((p) => [p.offset, data.show(p.data)]);
  expect(hist.publications.length === 2,
    `smallhistory history has ${hist.publications.length} publications, want 2: ${short(kept)}`);
  hist.publications.forEach((p, i) => {
    expect(p.offset === offsets[i + 1] && data.same(p.data, values[i + 1]),
      `smallhistory history ${short(kept)}, want offsets ${offsets.slice(1)} with n=2,3`);
  });
  expect(hist.offset === offsets[2], `smallhistory top offset ${hist.offset}, want ${offsets[2]}`);
  passed('9 smallhistory', `history kept offsets ${kept.map(([o]) => o)} of ${offsets}`);
}

await run(main);
