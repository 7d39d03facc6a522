#!/usr/bin/env python3
"""Starling interop checks driven by the real centrifuge-python SDK.

Run by the Rust harness (tests/interop/main.rs) against a live Starling node.
Inputs come from the environment:

- STARLING_WS_URL          ws://HOST:PORT/connection/websocket
- STARLING_ENCODING        "json" or "protobuf"
- STARLING_TOKEN_ALICE     HS256 connection token for user "alice"
- STARLING_TOKEN_BOB       HS256 connection token for user "bob"
- STARLING_HMAC_SECRET     the server's client.token.hmac_secret_key; this
                           script signs its subscription tokens with it
- STARLING_CHANNEL_PREFIX  unique per run, keeps runs apart

Every check prints one line; the first failing check prints FAIL with what
was expected and what the SDK reported, and the script exits 1. Nothing here
sleeps to synchronise: every wait is on an SDK event with a deadline.

The server config lets no one subscribe without a subscription token, so
subscriptions get theirs the way applications do: the SDK's get_token hook,
here minting the HS256 JWT locally instead of asking an app backend.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    SubscriptionEventHandler,
)

from checks import WAIT, CheckFailed, env, expect, passed, run_checks


class Recorder:
    """Keeps every event an SDK object emitted, in order, so checks can wait
    for one (with a deadline) and later assert on everything that arrived."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: List[Tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def add(self, kind: str, ctx: Any) -> None:
        self.events.append((kind, ctx))
        self._changed.set()

    def mark(self) -> int:
        """Position after the last event so far: waits from it see only newer ones."""
        return len(self.events)

    def of(self, kind: str, since: int = 0) -> List[Any]:
        return [ctx for k, ctx in self.events[since:] if k == kind]

    async def wait(
        self,
        what: str,
        kind: str,
        pred: Callable[[Any], bool] = lambda _ctx: True,
        since: int = 0,
        count: int = 1,
        fail_on: Tuple[str, ...] = (),
    ) -> List[Any]:
        """Waits until `count` events of `kind` after `since` match `pred`;
        an event of a kind in `fail_on` (e.g. "unsubscribed" while waiting
        for "subscribed") fails at once, as nothing would come after it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            self._changed.clear()
            found = [ctx for ctx in self.of(kind, since) if pred(ctx)]
            if len(found) >= count:
                return found
            for bad in fail_on:
                for ctx in self.of(bad, since):
                    raise CheckFailed(
                        f"{self.name}: got {bad} {short(ctx)} while waiting for {what}"
                    )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise CheckFailed(
                    f"timed out after {WAIT}s waiting for {self.name}: {what} "
                    f"(matching so far: {found!r}; all events: {self.summary()})"
                )
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def summary(self) -> str:
        """The last events, enough to see what happened instead."""
        tail = self.events[-12:]
        skipped = len(self.events) - len(tail)
        head = f"({skipped} earlier) " if skipped else ""
        return head + ", ".join(f"{k}:{short(ctx)}" for k, ctx in tail)


def short(ctx: Any) -> str:
    text = repr(ctx)
    return text if len(text) <= 200 else text[:200] + "..."


class ClientEvents(ClientEventHandler):
    """Records client-level events, including server-side subscriptions.

    `hold`, when set, is awaited inside on_connecting: the SDK awaits this
    handler before it schedules a reconnect, so a dropped client stays away
    until the test releases it (bounded by WAIT)."""

    def __init__(self, name: str) -> None:
        self.rec = Recorder(name)
        self.hold: Optional[asyncio.Event] = None

    async def on_connecting(self, ctx):
        self.rec.add("connecting", ctx)
        hold = self.hold
        if hold is not None:
            await asyncio.wait_for(hold.wait(), WAIT)

    async def on_connected(self, ctx):
        self.rec.add("connected", ctx)

    async def on_disconnected(self, ctx):
        self.rec.add("disconnected", ctx)

    async def on_error(self, ctx):
        print(f"  [{self.rec.name}] error event: {short(ctx)}", file=sys.stderr, flush=True)
        self.rec.add("error", ctx)

    async def on_subscribed(self, ctx):
        self.rec.add("server_subscribed", ctx)

    async def on_subscribing(self, ctx):
        self.rec.add("server_subscribing", ctx)

    async def on_unsubscribed(self, ctx):
        self.rec.add("server_unsubscribed", ctx)

    async def on_publication(self, ctx):
        self.rec.add("server_publication", ctx)

    async def on_join(self, ctx):
        self.rec.add("server_join", ctx)

    async def on_leave(self, ctx):
        self.rec.add("server_leave", ctx)


class SubEvents(SubscriptionEventHandler):
    """Records one subscription's events."""

    def __init__(self, name: str) -> None:
        self.rec = Recorder(name)

    async def on_subscribing(self, ctx):
        self.rec.add("subscribing", ctx)

    async def on_subscribed(self, ctx):
        self.rec.add("subscribed", ctx)

    async def on_unsubscribed(self, ctx):
        self.rec.add("unsubscribed", ctx)

    async def on_publication(self, ctx):
        self.rec.add("publication", ctx)

    async def on_join(self, ctx):
        self.rec.add("join", ctx)

    async def on_leave(self, ctx):
        self.rec.add("leave", ctx)

    async def on_error(self, ctx):
        print(f"  [{self.rec.name}] error event: {short(ctx)}", file=sys.stderr, flush=True)
        self.rec.add("error", ctx)


class Payloads:
    """Publication data for the chosen encoding: JSON mode sends and receives
    objects; Protobuf mode sends and receives the JSON text as bytes."""

    def __init__(self, protobuf: bool) -> None:
        self.protobuf = protobuf

    def make(self, value: dict) -> Any:
        if self.protobuf:
            return json.dumps(value, separators=(",", ":")).encode("utf-8")
        return value

    def same(self, got: Any, value: dict) -> bool:
        want = self.make(value)
        if self.protobuf:
            return isinstance(got, (bytes, bytearray)) and bytes(got) == want
        return got == want


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def subscription_token(secret: str, user: str, channel: str) -> str:
    """An HS256 subscription token as an app backend would issue it: `sub`
    is the user, `channel` the channel, valid for 5 minutes."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"sub": user, "channel": channel, "exp": int(time.time()) + 300}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    )
    signature = hmac.new(
        secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    return f"{signing_input}.{b64url(signature)}"


class Tokens:
    """get_token hooks for one user's subscriptions; counts the calls per
    channel so the output shows when the SDK asked for a token."""

    def __init__(self, secret: str, user: str) -> None:
        self.secret = secret
        self.user = user
        self.calls: Dict[str, int] = {}

    def hook(self, channel: str) -> Callable[[str], Awaitable[str]]:
        async def get_token(asked: str) -> str:
            expect(asked == channel, f"get_token of {channel!r} was asked for {asked!r}")
            self.calls[channel] = self.calls.get(channel, 0) + 1
            return subscription_token(self.secret, self.user, asked)

        return get_token


def drop_transport(client: Client) -> None:
    """Cuts the client's TCP connection the way a network failure would: no
    close frame, the socket is aborted. The SDK keeps no public handle on its
    websockets connection, so its `_conn` is used; everything after this
    (noticing the loss, reconnecting, recovering) is the SDK's own doing."""
    conn = client._conn  # noqa: SLF001 - see docstring
    expect(conn is not None, "bob has no open websocket to drop")
    conn.transport.abort()


async def run() -> None:
    url = env("STARLING_WS_URL")
    encoding = env("STARLING_ENCODING")
    expect(
        encoding in ("json", "protobuf"),
        f"STARLING_ENCODING must be json or protobuf, got {encoding!r}",
    )
    protobuf = encoding == "protobuf"
    prefix = env("STARLING_CHANNEL_PREFIX")
    secret = env("STARLING_HMAC_SECRET")
    room = f"{prefix}-room"
    small = f"smallhistory:{prefix}"
    data = Payloads(protobuf)
    print(f"centrifuge-python against {url} ({encoding}), channels {room!r}, {small!r}", flush=True)

    alice_ev = ClientEvents("alice")
    bob_ev = ClientEvents("bob")
    alice = Client(
        url,
        events=alice_ev,
        token=env("STARLING_TOKEN_ALICE"),
        use_protobuf=protobuf,
        timeout=WAIT,
        proxy=None,
    )
    bob = Client(
        url,
        events=bob_ev,
        token=env("STARLING_TOKEN_BOB"),
        use_protobuf=protobuf,
        timeout=WAIT,
        proxy=None,
    )
    try:
        await checks(
            alice,
            alice_ev,
            Tokens(secret, "alice"),
            bob,
            bob_ev,
            Tokens(secret, "bob"),
            prefix,
            data,
        )
    finally:
        for client in (alice, bob):
            try:
                await asyncio.wait_for(client.disconnect(), WAIT)
            except Exception as e:  # the verdict is already decided
                print(f"  (disconnect failed: {e!r})", file=sys.stderr, flush=True)


async def checks(
    alice, alice_ev, alice_tokens, bob, bob_ev, bob_tokens, prefix, data: Payloads
) -> None:
    room = f"{prefix}-room"
    small = f"smallhistory:{prefix}"
    # 1. connect
    await alice.connect()
    (a_conn,) = await alice_ev.rec.wait("connected event", "connected", fail_on=("disconnected",))
    expect(bool(a_conn.client), f"alice connected without a client id: {a_conn!r}")
    alice_id = a_conn.client
    await bob.connect()
    (b_conn,) = await bob_ev.rec.wait("connected event", "connected", fail_on=("disconnected",))
    expect(bool(b_conn.client), f"bob connected without a client id: {b_conn!r}")
    expect(b_conn.client != alice_id, f"alice and bob got the same client id {alice_id!r}")
    bob_id = b_conn.client
    passed("1 connect", f"alice client={alice_id} bob client={bob_id}")

    # 10. no token, no subscription: nothing in the config lets a client
    # subscribe on its own, so the server refuses with 103 (permission denied)
    # and the SDK, as for any permanent subscribe error, ends the subscription.
    bare = f"{prefix}-notoken"
    bare_ev = SubEvents(f"alice {bare}")
    bare_sub = alice.new_subscription(bare, events=bare_ev)
    await bare_sub.subscribe()
    (refused,) = await bare_ev.rec.wait(
        "unsubscribed (refused)", "unsubscribed", fail_on=("subscribed",)
    )
    expect(
        refused.code == 103,
        f"subscribing to {bare} without a token ended with {refused!r}, want code 103",
    )
    passed(
        "10 token required",
        f"{bare} without a token: unsubscribed {refused.code} {refused.reason!r}",
    )

    # 2. subscribe: alice first, so bob's join reaches an already subscribed alice.
    a_room_ev = SubEvents(f"alice {room}")
    a_room = alice.new_subscription(room, events=a_room_ev, get_token=alice_tokens.hook(room))
    await a_room.subscribe()
    (a_sub,) = await a_room_ev.rec.wait("subscribed event", "subscribed", fail_on=("unsubscribed",))
    b_room_ev = SubEvents(f"bob {room}")
    b_room = bob.new_subscription(room, events=b_room_ev, get_token=bob_tokens.hook(room))
    await b_room.subscribe()
    (b_sub,) = await b_room_ev.rec.wait("subscribed event", "subscribed", fail_on=("unsubscribed",))
    expect(
        b_sub.channel == room,
        f"bob's subscribed event names channel {b_sub.channel!r}, want {room!r}",
    )
    expect(
        b_sub.recoverable
        and b_sub.stream_position is not None
        and bool(b_sub.stream_position.epoch),
        f"force_recovery is on, but bob's subscribe is not recoverable with an epoch: {b_sub!r}",
    )
    calls = (alice_tokens.calls.get(room, 0), bob_tokens.calls.get(room, 0))
    expect(calls == (1, 1), f"get_token calls for {room} (alice, bob): {calls}, want (1, 1)")
    passed(
        "2 subscribe",
        f"both subscribed to {room} with get_token (recoverable, "
        f"epoch={b_sub.stream_position.epoch})",
    )

    # 3a. join: force_push_join_leave makes the server push bob's join to alice.
    (join,) = await a_room_ev.rec.wait("join of bob", "join", lambda c: c.info.client == bob_id)
    expect(join.info.user == "bob", f"bob's join carries user {join.info.user!r}, want 'bob'")
    passed("3 join", f"alice saw bob join (client={join.info.client}, user={join.info.user})")

    # 4. publish from alice, bob receives exactly that data with an offset.
    hello = {"text": "hello", "n": 1}
    await alice.publish(room, data.make(hello))
    (pub,) = await b_room_ev.rec.wait("publication n=1", "publication")
    expect(
        data.same(pub.pub.data, hello), f"bob got data {pub.pub.data!r}, want {data.make(hello)!r}"
    )
    expect(pub.pub.offset > 0, f"publication has no offset: {pub.pub!r}")
    hello_offset = pub.pub.offset
    passed("4 publish", f"bob received {pub.pub.data!r} at offset {hello_offset}")

    # 5. history
    hist = await alice.history(room, limit=10)
    expect(
        len(hist.publications) == 1,
        f"history has {len(hist.publications)} publications, want 1: {hist!r}",
    )
    expect(
        data.same(hist.publications[0].data, hello),
        f"history data {hist.publications[0].data!r}, want {data.make(hello)!r}",
    )
    expect(
        hist.publications[0].offset == hello_offset,
        f"history offset {hist.publications[0].offset}, bob saw {hello_offset}",
    )
    expect(hist.offset == hello_offset, f"history top offset {hist.offset}, want {hello_offset}")
    expect(
        hist.epoch == b_sub.stream_position.epoch,
        f"history epoch {hist.epoch!r}, subscribe said {b_sub.stream_position.epoch!r}",
    )
    passed(
        "5 history",
        f"1 publication at offset {hello_offset}, top offset {hist.offset}, epoch {hist.epoch}",
    )

    # 6. presence + presence stats
    pres = await alice.presence(room)
    got = {cid: info.user for cid, info in pres.clients.items()}
    expect(
        got == {alice_id: "alice", bob_id: "bob"},
        f"presence {got!r}, want {{{alice_id!r}: 'alice', {bob_id!r}: 'bob'}}",
    )
    for cid, info in pres.clients.items():
        expect(info.client == cid, f"presence entry {cid!r} carries client {info.client!r}")
    stats = await bob.presence_stats(room)
    expect(
        (stats.num_clients, stats.num_users) == (2, 2),
        f"presence_stats {stats!r}, want 2 clients, 2 users",
    )
    passed(
        "6 presence", f"clients {got}; stats {stats.num_clients} clients, {stats.num_users} users"
    )

    # 7. recovery after a dropped connection
    bob_mark = bob_ev.rec.mark()
    sub_mark = b_room_ev.rec.mark()
    hold = asyncio.Event()
    bob_ev.hold = hold
    token_calls = bob_tokens.calls.get(room, 0)
    drop_transport(bob)
    await bob_ev.rec.wait("connecting after the drop", "connecting", since=bob_mark)
    await b_room_ev.rec.wait("subscribing after the drop", "subscribing", since=sub_mark)
    missed = [{"text": "missed", "n": n} for n in (2, 3, 4)]
    for value in missed:
        await alice.publish(room, data.make(value))
    # Only now may bob come back; it must not have done so already.
    expect(bob.state == ClientState.CONNECTING, f"bob is {bob.state} while it should be away")
    bob_ev.hold = None
    hold.set()
    (b_conn2,) = await bob_ev.rec.wait(
        "reconnected", "connected", since=bob_mark, fail_on=("disconnected",)
    )
    bob_id = b_conn2.client
    (resub,) = await b_room_ev.rec.wait(
        "resubscribed", "subscribed", since=sub_mark, fail_on=("unsubscribed",)
    )
    expect(resub.was_recovering, f"bob's resubscribe did not try to recover: {resub!r}")
    expect(resub.recovered, f"bob's resubscribe was not recovered: {resub!r}")
    await b_room_ev.rec.wait("3 recovered publications", "publication", since=sub_mark, count=3)
    # A marker published after the recovery bounds what bob may have got:
    # anything besides the 3 missed + marker is a duplicate or a stray.
    marker = {"text": "after", "n": 5}
    await alice.publish(room, data.make(marker))
    await b_room_ev.rec.wait(
        "marker publication n=5",
        "publication",
        lambda c: data.same(c.pub.data, marker),
        since=sub_mark,
    )
    pubs = [c.pub for c in b_room_ev.rec.of("publication", sub_mark)]
    wanted = missed + [marker]
    expect(
        len(pubs) == len(wanted),
        f"bob got {len(pubs)} publications after the drop, want {len(wanted)}: "
        f"{[(p.offset, p.data) for p in pubs]!r}",
    )
    for i, (p, value) in enumerate(zip(pubs, wanted)):
        expect(
            data.same(p.data, value),
            f"publication #{i} after the drop is {p.data!r}, want {data.make(value)!r}",
        )
        expect(
            p.offset == hello_offset + 1 + i,
            f"publication #{i} after the drop has offset {p.offset}, want {hello_offset + 1 + i}",
        )
    # The SDK keeps a subscription token it got until the server says it
    # expired, so the resubscribe may reuse it; either way the server took it.
    fetched = bob_tokens.calls.get(room, 0) - token_calls
    passed(
        "7 recovery",
        f"bob reconnected as {bob_id}, recovered=True, "
        f"got offsets {[p.offset for p in pubs[:3]]} once each, in order "
        f"(get_token calls on resubscribe: {fetched})",
    )

    # 3b. leave: bob unsubscribes, alice sees the leave of bob's current client.
    leave_mark = a_room_ev.rec.mark()
    await b_room.unsubscribe()
    (leave,) = await a_room_ev.rec.wait(
        "leave of bob", "leave", lambda c: c.info.client == bob_id, since=leave_mark
    )
    expect(leave.info.user == "bob", f"bob's leave carries user {leave.info.user!r}, want 'bob'")
    passed("3 leave", f"alice saw bob leave (client={leave.info.client}, user={leave.info.user})")

    # 8. personal channel: a server-side subscription the SDK reports itself.
    (personal,) = await alice_ev.rec.wait(
        "server-side subscribed to #alice", "server_subscribed", lambda c: c.channel == "#alice"
    )
    await bob_ev.rec.wait(
        "server-side subscribed to #bob", "server_subscribed", lambda c: c.channel == "#bob"
    )
    passed("8 personal channel", f"alice server-side subscribed to {personal.channel}, bob to #bob")

    # 9. smallhistory keeps the last 2 of 3.
    s_ev = SubEvents(f"alice {small}")
    s_sub = alice.new_subscription(small, events=s_ev, get_token=alice_tokens.hook(small))
    await s_sub.subscribe()
    await s_ev.rec.wait("subscribed event", "subscribed", fail_on=("unsubscribed",))
    values = [{"text": "small", "n": n} for n in (1, 2, 3)]
    for value in values:
        await alice.publish(small, data.make(value))
    seen = await s_ev.rec.wait("3 publications", "publication", count=3)
    offsets = [c.pub.offset for c in seen]
    hist = await alice.history(small, limit=10)
    got = [(p.offset, p.data) for p in hist.publications]
    expect(len(got) == 2, f"smallhistory history has {len(got)} publications, want 2: {got!r}")
    for (off, payload), want_off, value in zip(got, offsets[1:], values[1:]):
        expect(
            off == want_off and data.same(payload, value),
            f"smallhistory history {got!r}, want offsets {offsets[1:]} with n=2,3",
        )
    expect(hist.offset == offsets[2], f"smallhistory top offset {hist.offset}, want {offsets[2]}")
    passed("9 smallhistory", f"history kept offsets {[o for o, _ in got]} of {offsets}")


if __name__ == "__main__":
    sys.exit(run_checks(run))
