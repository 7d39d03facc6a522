#!/usr/bin/env python3
"""Two centrifuge-python clients on two different nodes of one Starling
cluster chat in one room.

Run by the Rust harness (tests/interop/main.rs, the `python_cluster_chat_*`
tests) against a 3-node cluster. The room is owned by a third node, so both
clients reach it through their node's relay: every subscribe, publish,
history and presence call crosses the cluster plane. Inputs come from the
environment:

- STARLING_WS_URL_ALICE    ws://HOST:PORT/connection/websocket of alice's node
- STARLING_WS_URL_BOB      the same for bob's node (another node)
- STARLING_ENCODING_ALICE  "json" or "protobuf"
- STARLING_ENCODING_BOB    "json" or "protobuf"
- STARLING_TOKEN_ALICE     HS256 connection token for user "alice"
- STARLING_TOKEN_BOB       HS256 connection token for user "bob"
- STARLING_HMAC_SECRET     signs the subscription tokens this script mints
- STARLING_ROOM            the room, owned by neither client's node
- STARLING_BURST           publications each client sends at once in check 5

Each check prints one line; the first failure prints FAIL and exits 1. Every
wait is on an SDK event with a deadline; nothing sleeps to synchronise.

The event recorders, payload helpers and token hooks are interop.py's.
"""

import asyncio
import json
import sys
from typing import Any, List, Tuple

from centrifuge import Client

from checks import WAIT, CheckFailed, env, expect, passed, run_checks
from interop import ClientEvents, Payloads, SubEvents, Tokens


def encoding_of(name: str) -> bool:
    """True for protobuf, False for JSON, from the variable `name`."""
    encoding = env(name)
    expect(
        encoding in ("json", "protobuf"),
        f"{name} must be json or protobuf, got {encoding!r}",
    )
    return encoding == "protobuf"


def value_of(data: Any) -> Any:
    """Publication data as a JSON value, whichever encoding delivered it: a
    Protobuf client gets the JSON text another client published as bytes."""
    if isinstance(data, (bytes, bytearray)):
        return json.loads(bytes(data).decode("utf-8"))
    return data


class Side:
    """One chatter: its client, events, subscription and encoding."""

    def __init__(self, name: str, url: str, token: str, protobuf: bool, secret: str) -> None:
        self.name = name
        self.url = url
        self.data = Payloads(protobuf)
        self.encoding = "protobuf" if protobuf else "json"
        self.events = ClientEvents(name)
        self.tokens = Tokens(secret, name)
        self.client = Client(
            url,
            events=self.events,
            token=token,
            use_protobuf=protobuf,
            timeout=WAIT,
            proxy=None,
        )
        self.room_ev = SubEvents(f"{name} room")
        self.sub = None

    def received(self, since: int = 0) -> List[Tuple[int, Any]]:
        """(offset, data as a JSON value) of every publication received."""
        return [
            (c.pub.offset, value_of(c.pub.data))
            for c in self.room_ev.rec.of("publication", since)
        ]


async def run() -> None:
    secret = env("STARLING_HMAC_SECRET")
    room = env("STARLING_ROOM")
    burst = int(env("STARLING_BURST"))
    alice = Side(
        "alice",
        env("STARLING_WS_URL_ALICE"),
        env("STARLING_TOKEN_ALICE"),
        encoding_of("STARLING_ENCODING_ALICE"),
        secret,
    )
    bob = Side(
        "bob",
        env("STARLING_WS_URL_BOB"),
        env("STARLING_TOKEN_BOB"),
        encoding_of("STARLING_ENCODING_BOB"),
        secret,
    )
    expect(alice.url != bob.url, f"alice and bob must use different nodes, both got {alice.url}")
    print(
        f"centrifuge-python: alice ({alice.encoding}) on {alice.url}, "
        f"bob ({bob.encoding}) on {bob.url}, room {room!r}",
        flush=True,
    )
    try:
        await checks(alice, bob, room, burst)
    finally:
        for side in (alice, bob):
            try:
                await asyncio.wait_for(side.client.disconnect(), WAIT)
            except Exception as e:  # the verdict is already decided
                print(f"  (disconnect failed: {e!r})", file=sys.stderr, flush=True)


async def checks(alice: Side, bob: Side, room: str, burst: int) -> None:
    # 1. connect, each to its own node
    ids = {}
    for side in (alice, bob):
        await side.client.connect()
        (conn,) = await side.events.rec.wait(
            "connected event", "connected", fail_on=("disconnected",)
        )
        expect(bool(conn.client), f"{side.name} connected without a client id: {conn!r}")
        ids[side.name] = conn.client
    expect(ids["alice"] != ids["bob"], f"alice and bob got the same client id {ids['alice']!r}")
    passed("1 connect", f"alice client={ids['alice']} bob client={ids['bob']}")

    # 2. subscribe: alice first, so bob's join reaches an already subscribed alice.
    subscribed = {}
    for side in (alice, bob):
        side.sub = side.client.new_subscription(
            room, events=side.room_ev, get_token=side.tokens.hook(room)
        )
        await side.sub.subscribe()
        (ctx,) = await side.room_ev.rec.wait(
            "subscribed event", "subscribed", fail_on=("unsubscribed",)
        )
        expect(
            ctx.recoverable and ctx.stream_position is not None and bool(ctx.stream_position.epoch),
            f"force_recovery is on, but {side.name}'s subscribe has no position: {ctx!r}",
        )
        subscribed[side.name] = ctx.stream_position
    a_pos, b_pos = subscribed["alice"], subscribed["bob"]
    expect(
        (a_pos.offset, a_pos.epoch) == (b_pos.offset, b_pos.epoch),
        f"the two nodes report different stream positions for one room: "
        f"alice {a_pos!r}, bob {b_pos!r}",
    )
    start = a_pos.offset
    passed("2 subscribe", f"both at offset {start}, epoch {a_pos.epoch}, on two nodes")

    # 3. join: the owner pushes bob's join to alice's node.
    (join,) = await alice.room_ev.rec.wait(
        "join of bob", "join", lambda c: c.info.client == ids["bob"]
    )
    expect(join.info.user == "bob", f"bob's join carries user {join.info.user!r}, want 'bob'")
    passed("3 join", f"alice saw bob (user {join.info.user!r}) join from the other node")

    # 4. chat: alice says hello, both see it; bob answers, both see that too.
    lines = [
        (alice, {"from": "alice", "text": "hello bob"}),
        (bob, {"from": "bob", "text": "hi alice"}),
    ]
    for n, (speaker, value) in enumerate(lines, start=1):
        await speaker.client.publish(room, speaker.data.make(value))
        for side in (alice, bob):
            await side.room_ev.rec.wait(
                f"publication #{n} ({value['from']})", "publication", count=n
            )
    want = [(start + 1 + i, value) for i, (_, value) in enumerate(lines)]
    for side in (alice, bob):
        got = side.received()
        expect(
            got == want,
            f"{side.name} received {got!r}, want {want!r} (own and other's line, offsets +1)",
        )
    passed(
        "4 chat",
        f"each received the other's line and its own, offsets {[o for o, _ in want]} on both sides",
    )

    # 5. both publish at once: one room, one order, the same on both nodes.
    mark = {side.name: side.room_ev.rec.mark() for side in (alice, bob)}
    values = {
        side.name: [{"from": side.name, "n": n} for n in range(burst)] for side in (alice, bob)
    }

    async def talk(side: Side) -> None:
        for value in values[side.name]:
            await side.client.publish(room, side.data.make(value))

    await asyncio.wait_for(asyncio.gather(talk(alice), talk(bob)), WAIT)
    for side in (alice, bob):
        await side.room_ev.rec.wait(
            f"{2 * burst} burst publications",
            "publication",
            since=mark[side.name],
            count=2 * burst,
        )
    seen = {side.name: side.received(mark[side.name]) for side in (alice, bob)}
    first = start + 1 + len(lines)
    for name, got in seen.items():
        offsets = [o for o, _ in got]
        expect(
            offsets == list(range(first, first + 2 * burst)),
            f"{name} got burst offsets {offsets}, want {first}..{first + 2 * burst - 1} in order",
        )
        for sender, sent in values.items():
            order = [v for _, v in got if v.get("from") == sender]
            expect(order == sent, f"{name} saw {sender}'s burst as {order!r}, want {sent!r}")
    expect(
        seen["alice"] == seen["bob"],
        f"the nodes delivered different orders: alice {seen['alice']!r}, bob {seen['bob']!r}",
    )
    last = first + 2 * burst - 1
    passed(
        "5 one order",
        f"{2 * burst} concurrent publications at offsets {first}..{last}, "
        f"same order on both nodes: {[v['from'][0] for _, v in seen['alice']]}",
    )

    # 6. history and presence answer the same through both nodes.
    everything = want + seen["alice"]
    for side in (alice, bob):
        hist = await side.client.history(room, limit=100)
        got = [(p.offset, value_of(p.data)) for p in hist.publications]
        expect(got == everything, f"history via {side.name}'s node: {got!r}, want {everything!r}")
        expect(
            (hist.offset, hist.epoch) == (last, a_pos.epoch),
            f"history via {side.name}'s node at ({hist.offset}, {hist.epoch!r}), "
            f"want ({last}, {a_pos.epoch!r})",
        )
        pres = await side.client.presence(room)
        users = {cid: info.user for cid, info in pres.clients.items()}
        expect(
            users == {ids["alice"]: "alice", ids["bob"]: "bob"},
            f"presence via {side.name}'s node: {users!r}",
        )
    passed(
        "6 history and presence",
        f"{len(everything)} publications and both clients via both nodes",
    )

    # 7. leave: bob unsubscribes on his node, alice sees it on hers.
    leave_mark = alice.room_ev.rec.mark()
    await bob.sub.unsubscribe()
    (leave,) = await alice.room_ev.rec.wait(
        "leave of bob", "leave", lambda c: c.info.client == ids["bob"], since=leave_mark
    )
    expect(leave.info.user == "bob", f"bob's leave carries user {leave.info.user!r}, want 'bob'")
    passed("7 leave", "alice saw bob leave from the other node")


if __name__ == "__main__":
    sys.exit(run_checks(run))
