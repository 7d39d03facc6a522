#!/usr/bin/env python3
"""A centrifuge-python client survives the death of the cluster node it is connected to.

Run by the Rust harness (tests/interop/main.rs, `python_client_survives_its_node_dying`)
against a 3-node cluster. The client dials a TCP proxy standing in for a load balancer, which
first forwards to node 3. It subscribes to two rooms:

- STAYS, owned by node 1: the room outlives node 3, so after the failover the client recovers
  what was published while it was away (`recovered` true, consecutive offsets, same epoch);
- MOVES, owned by node 3: the shard goes to its replica, which continues the room with the same
  epoch and offsets, so the client resubscribes with `recovered` true (nothing was published
  while it was away) and gets what is published after that at the next offset.

The test publishes through the server API of nodes 1 and 2 and drives the failover (it cuts the
proxy, kills node 3, publishes into STAYS, points the proxy at node 1). The SDK does the rest
on its own: it notices the lost connection, reconnects with backoff, resubscribes, recovers.

The script tells the test where it is with lines `SYNC <step>`, which the test waits for:

- `SYNC subscribed ID`   connected as client ID, both rooms subscribed: the test checks the
                        rooms' presence and publishes one message in each;
- `SYNC received`       both received: the test cuts the proxy and kills node 3;
- `SYNC resubscribed ID` back on node 1 as client ID, both rooms recovered:
                        the test checks presence again and publishes once more in each.

Inputs come from the environment:

- STARLING_WS_URL        ws://PROXY/connection/websocket
- STARLING_TOKEN_ALICE   HS256 connection token for user "alice"
- STARLING_HMAC_SECRET   signs the subscription tokens this script mints
- STARLING_ROOM_STAYS    the room node 1 owns
- STARLING_ROOM_MOVES    the room node 3 owns
- STARLING_OUTAGE        how many publications the test makes in STAYS while the client is away

Publications are JSON objects {"room": "stays"|"moves", "phase": "before"|"outage"|"after",
"n": N}. Each check prints one line; the first failure prints FAIL and exits 1. Every wait is
on an SDK event with a deadline; nothing sleeps to synchronise.
"""

import asyncio
import sys
from typing import Any, Dict, List, Tuple

from centrifuge import Client, ClientState

from checks import WAIT, env, expect, passed, run_checks
from interop import ClientEvents, SubEvents, Tokens


def sync(step: str, client_id: str = "") -> None:
    """Tells the test that the script reached `step` (and, when given, the client id the
    connection has now, which the test looks for in the rooms' presence)."""
    print(f"SYNC {step} {client_id}".rstrip(), flush=True)


def msg(room: str, phase: str, n: int) -> Dict[str, Any]:
    return {"room": room, "phase": phase, "n": n}


class Room:
    """One subscription: its name, events and the (offset, data) of what it received."""

    def __init__(self, client: Client, tokens: Tokens, label: str, channel: str) -> None:
        self.label = label
        self.channel = channel
        self.ev = SubEvents(f"alice {label} {channel}")
        # recoverable asks for recovery on every resubscribe; the server's force_recovery
        # would give it anyway. A short resubscribe backoff keeps retries during the failover
        # (while the room has no live owner) frequent.
        self.sub = client.new_subscription(
            channel,
            events=self.ev,
            get_token=tokens.hook(channel),
            recoverable=True,
            min_resubscribe_delay=0.1,
            max_resubscribe_delay=0.5,
        )

    def received(self, since: int = 0) -> List[Tuple[int, Any]]:
        return [(c.pub.offset, c.pub.data) for c in self.ev.rec.of("publication", since)]


async def run() -> None:
    url = env("STARLING_WS_URL")
    secret = env("STARLING_HMAC_SECRET")
    outage = int(env("STARLING_OUTAGE"))
    events = ClientEvents("alice")
    # A short reconnect backoff: the proxy refuses the client until the test points it at a
    # live node, and the client should come back soon after that.
    client = Client(
        url,
        events=events,
        token=env("STARLING_TOKEN_ALICE"),
        timeout=WAIT,
        min_reconnect_delay=0.1,
        max_reconnect_delay=0.5,
        proxy=None,
    )
    tokens = Tokens(secret, "alice")
    stays = Room(client, tokens, "stays", env("STARLING_ROOM_STAYS"))
    moves = Room(client, tokens, "moves", env("STARLING_ROOM_MOVES"))
    print(
        f"centrifuge-python through {url}: {stays.channel!r} (node 1), {moves.channel!r} (node 3)",
        flush=True,
    )
    try:
        await checks(client, events, stays, moves, outage)
    finally:
        try:
            await asyncio.wait_for(client.disconnect(), WAIT)
        except Exception as e:  # the verdict is already decided
            print(f"  (disconnect failed: {e!r})", file=sys.stderr, flush=True)


async def checks(client: Client, events: ClientEvents, stays: Room, moves: Room, outage: int):
    # 1. connect through the proxy (to node 3) and subscribe to both rooms.
    await client.connect()
    (conn,) = await events.rec.wait("connected event", "connected", fail_on=("disconnected",))
    first_id = conn.client
    start = {}
    for room in (stays, moves):
        await room.sub.subscribe()
        (ctx,) = await room.ev.rec.wait(
            "subscribed event", "subscribed", fail_on=("unsubscribed",)
        )
        expect(
            ctx.recoverable and ctx.stream_position is not None and bool(ctx.stream_position.epoch),
            f"{room.label}: force_recovery is on, but the subscribe has no position: {ctx!r}",
        )
        start[room.label] = ctx.stream_position
    passed(
        "1 subscribe",
        f"client {first_id} via the proxy; "
        + ", ".join(f"{k} at {p.offset}/{p.epoch}" for k, p in start.items()),
    )
    sync("subscribed", first_id)

    # 2. the test publishes one message in each room through node 1.
    for room in (stays, moves):
        await room.ev.rec.wait("publication before the failover", "publication")
        want = [(start[room.label].offset + 1, msg(room.label, "before", 1))]
        got = room.received()
        expect(got == want, f"{room.label} received {got!r}, want {want!r}")
    passed("2 before", "each room delivered its publication through node 3's relay")
    client_mark = events.rec.mark()
    marks = {room.label: room.ev.rec.mark() for room in (stays, moves)}
    sync("received")

    # 3. the proxy cuts the connection as node 3 dies; the SDK reconnects by itself once the
    # proxy points at node 1, and resubscribes to both rooms.
    await events.rec.wait(
        "connecting after the cut", "connecting", since=client_mark, fail_on=("disconnected",)
    )
    (back,) = await events.rec.wait(
        "reconnected", "connected", since=client_mark, fail_on=("disconnected",)
    )
    expect(client.state == ClientState.CONNECTED, f"client is {client.state} after reconnecting")
    expect(back.client != first_id, f"the new connection kept client id {first_id!r}")
    passed("3 reconnect", f"the SDK reconnected through the proxy as {back.client}")

    # 4. STAYS: recovered in the same epoch, the outage publications at consecutive offsets.
    before = start["stays"].offset + 1
    (resub,) = await stays.ev.rec.wait(
        "resubscribed", "subscribed", since=marks["stays"], fail_on=("unsubscribed",)
    )
    expect(resub.was_recovering, f"stays: the resubscribe did not try to recover: {resub!r}")
    expect(resub.recovered, f"stays: the resubscribe was not recovered: {resub!r}")
    expect(
        resub.stream_position is not None
        and resub.stream_position.epoch == start["stays"].epoch
        and resub.stream_position.offset == before + outage,
        f"stays: resubscribed at {resub.stream_position!r}, want offset {before + outage} in "
        f"epoch {start['stays'].epoch!r}",
    )
    await stays.ev.rec.wait(
        f"{outage} recovered publications", "publication", since=marks["stays"], count=outage
    )
    want = [(before + n, msg("stays", "outage", n)) for n in range(1, outage + 1)]
    got = stays.received(marks["stays"])
    expect(got == want, f"stays recovered {got!r}, want {want!r} (no gap, no duplicate)")
    passed(
        "4 recovered",
        f"stays: recovered=True, offsets {[o for o, _ in got]} once each, epoch unchanged",
    )

    # 5. MOVES: subscribed again on its new owner, the shard's replica: the same epoch, at the
    # offset of the publication made before, nothing missed.
    (again,) = await moves.ev.rec.wait(
        "resubscribed", "subscribed", since=marks["moves"], fail_on=("unsubscribed",)
    )
    expect(again.was_recovering, f"moves: the resubscribe did not try to recover: {again!r}")
    expect(again.recovered, f"moves: the replica did not continue the stream: {again!r}")
    expect(
        again.stream_position is not None
        and again.stream_position.epoch == start["moves"].epoch
        and again.stream_position.offset == start["moves"].offset + 1,
        f"moves: resubscribed at {again.stream_position!r}, want offset "
        f"{start['moves'].offset + 1} in epoch {start['moves'].epoch!r}",
    )
    moved_from = again.stream_position.offset
    passed(
        "5 resubscribed",
        f"moves: recovered=True on the new owner, epoch {again.stream_position.epoch} kept, "
        f"offset {moved_from}",
    )
    sync("resubscribed", back.client)

    # 6. the test publishes once more in each room, through node 2.
    after = {
        "stays": [(before + outage + 1, msg("stays", "after", 1))],
        "moves": [(moved_from + 1, msg("moves", "after", 1))],
    }
    for room in (stays, moves):
        await room.ev.rec.wait(
            "publication after the failover",
            "publication",
            lambda c, label=room.label: c.pub.data == msg(label, "after", 1),
            since=marks[room.label],
        )
    expect(
        stays.received(marks["stays"]) == want + after["stays"],
        f"stays received {stays.received(marks['stays'])!r} after the cut, "
        f"want {want + after['stays']!r}",
    )
    expect(
        moves.received(marks["moves"]) == after["moves"],
        f"moves received {moves.received(marks['moves'])!r} after the cut, "
        f"want {after['moves']!r}",
    )
    for room in (stays, moves):
        subs = room.ev.rec.of("subscribed", marks[room.label])
        expect(len(subs) == 1, f"{room.label} subscribed {len(subs)} times after the cut")
    passed(
        "6 after",
        f"stays at {after['stays'][0][0]}, moves at {after['moves'][0][0]}: "
        "both rooms deliver again",
    )


if __name__ == "__main__":
    sys.exit(run_checks(run))
