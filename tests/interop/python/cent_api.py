#!/usr/bin/env python3
"""Starling's server HTTP API driven by cent, Centrifugo's official Python
client for it, with a centrifuge-python connection on the receiving end.

Run by the Rust harness (tests/interop/main.rs, test python_cent_api) against
a live Starling node. Inputs come from the environment:

- STARLING_API_URL         http://HOST:PORT/api
- STARLING_API_KEY         the node's http_api.key
- STARLING_WS_URL          ws://HOST:PORT/connection/websocket
- STARLING_TOKEN_ALICE     HS256 connection token for user "alice"
- STARLING_CHANNEL_PREFIX  unique per run, keeps runs apart

The node subscribes every connection to its user's personal channel
("#alice"), so alice receives what the API publishes there without asking.

Every check prints one line; the first failing check prints FAIL with what
was expected and what was seen, and the script exits 1. Nothing sleeps to
synchronise: every wait is on an SDK event with a deadline.
"""

import asyncio
import json
import sys
from typing import Any, Callable, List, Tuple

from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    CentApiResponseError,
    CentUnauthorizedError,
    Disconnect,
    DisconnectRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)
from centrifuge import Client, ClientEventHandler

from checks import WAIT, CheckFailed, env, expect, passed, run_checks


class Events(ClientEventHandler):
    """Records the client-level events (server-side subscriptions live here)."""

    def __init__(self) -> None:
        self.events: List[Tuple[str, Any]] = []
        self._changed = asyncio.Event()

    def _add(self, kind: str, ctx: Any) -> None:
        self.events.append((kind, ctx))
        self._changed.set()

    async def on_connected(self, ctx) -> None:
        self._add("connected", ctx)

    async def on_disconnected(self, ctx) -> None:
        self._add("disconnected", ctx)

    async def on_subscribed(self, ctx) -> None:
        self._add("subscribed", ctx)

    async def on_publication(self, ctx) -> None:
        self._add("publication", ctx)

    async def wait(self, what: str, kind: str, pred: Callable[[Any], bool] = lambda _c: True):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            self._changed.clear()
            for k, ctx in self.events:
                if k == kind and pred(ctx):
                    return ctx
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = ", ".join(f"{k}:{ctx!r}"[:120] for k, ctx in self.events[-8:])
                raise CheckFailed(f"timed out waiting for {what}; last events: {seen}")
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass


def publication_data(ctx) -> Any:
    data = ctx.pub.data
    if isinstance(data, (bytes, bytearray)):
        data = json.loads(data)
    return data


async def run() -> None:
    api_url = env("STARLING_API_URL")
    prefix = env("STARLING_CHANNEL_PREFIX")
    personal = "#alice"
    other = f"{prefix}-other"
    print(f"cent against {api_url}", flush=True)

    events = Events()
    alice = Client(
        env("STARLING_WS_URL"),
        events=events,
        token=env("STARLING_TOKEN_ALICE"),
        timeout=WAIT,
        proxy=None,
    )
    api = AsyncClient(api_url, env("STARLING_API_KEY"), timeout=WAIT)
    wrong = AsyncClient(api_url, "not-the-key", timeout=WAIT)
    try:
        await alice.connect()
        connected = await events.wait("alice connected", "connected")
        await events.wait(f"server-side subscription {personal}", "subscribed",
                          lambda c: c.channel == personal)
        passed("0 connect", f"alice is client {connected.client}, subscribed to {personal}")
        await checks(api, wrong, events, connected.client, personal, other)
    finally:
        for session in (api, wrong):
            await session.close()
        try:
            await asyncio.wait_for(alice.disconnect(), WAIT)
        except Exception as e:  # the verdict is already decided
            print(f"  (disconnect failed: {e!r})", file=sys.stderr, flush=True)


async def checks(api, wrong, events: Events, client_id: str, personal: str, other: str) -> None:
    # 1. publish: the result's offset and epoch, and the subscriber sees that offset.
    published = await api.publish(PublishRequest(channel=personal, data={"n": 1}))
    expect(published.offset >= 1 and published.epoch != "",
           f"publish result {published!r}, want an offset and an epoch")
    got = await events.wait(f"publication {published.offset}", "publication",
                            lambda c: c.channel == personal and c.pub.offset == published.offset)
    expect(publication_data(got) == {"n": 1}, f"publication data {got.pub.data!r}")
    passed("1 publish", f"offset {published.offset} epoch {published.epoch} reached alice")

    # 2. broadcast: one response per channel, in order.
    broadcast = await api.broadcast(BroadcastRequest(channels=[personal, other], data={"n": 2}))
    expect(len(broadcast.responses) == 2, f"broadcast responses {broadcast.responses!r}")
    for response in broadcast.responses:
        expect(response.error is None and response.result is not None,
               f"broadcast response {response!r}")
    offset2 = broadcast.responses[0].result.offset
    expect(offset2 == published.offset + 1, f"broadcast offset {offset2}, want {published.offset + 1}")
    await events.wait(f"broadcast publication {offset2}", "publication",
                      lambda c: c.channel == personal and c.pub.offset == offset2)
    passed("2 broadcast", f"offsets {[r.result.offset for r in broadcast.responses]}")

    # 3. history: both publications, in order, in the same epoch.
    history = await api.history(HistoryRequest(channel=personal, limit=10))
    seen = [(p.offset, p.data) for p in history.publications]
    expect(seen == [(published.offset, {"n": 1}), (offset2, {"n": 2})],
           f"history {seen!r}")
    expect(history.epoch == published.epoch and history.offset == offset2,
           f"history position {history.offset}/{history.epoch}")
    passed("3 history", f"{seen!r}")

    # 4. presence: alice's connection, by client id.
    presence = await api.presence(PresenceRequest(channel=personal))
    expect(list(presence.presence) == [client_id] and presence.presence[client_id].user == "alice",
           f"presence {presence.presence!r}")
    stats = await api.presence_stats(PresenceStatsRequest(channel=personal))
    expect((stats.num_clients, stats.num_users) == (1, 1), f"presence stats {stats!r}")
    passed("4 presence", f"{client_id} as alice; stats {stats.num_clients}/{stats.num_users}")

    # 5. channels: the personal channel is active; the pattern filters.
    channels = await api.channels(ChannelsRequest())
    expect(personal in channels.channels and channels.channels[personal].num_clients == 1,
           f"channels {channels.channels!r}")
    expect(other not in channels.channels, f"{other} has no subscribers but is listed")
    filtered = await api.channels(ChannelsRequest(pattern="#ali*"))
    expect(list(filtered.channels) == [personal], f"channels matching #ali*: {filtered.channels!r}")
    passed("5 channels", f"{sorted(channels.channels)}")

    # 6. info: this node, with alice counted.
    info = await api.info(InfoRequest())
    expect(len(info.nodes) == 1, f"info nodes {info.nodes!r}")
    node = info.nodes[0]
    expect(node.uid != "" and node.name != "" and node.num_clients >= 1 and node.num_users >= 1,
           f"info node {node!r}")
    passed("6 info", f"node {node.name} uid {node.uid}, {node.num_clients} clients")

    # 7. batch: replies in order, parsed by cent.
    batch = await api.batch(BatchRequest(requests=[
        PublishRequest(channel=other, data={"n": 3}),
        PresenceStatsRequest(channel=personal),
    ]))
    expect(len(batch.replies) == 2, f"batch replies {batch.replies!r}")
    expect(batch.replies[0].offset >= 1 and batch.replies[1].num_clients == 1,
           f"batch replies {batch.replies!r}")
    passed("7 batch", f"{batch.replies!r}")

    # 8. errors: a wrong key is refused outright; an API error comes back as one.
    try:
        await wrong.info(InfoRequest())
        raise CheckFailed("info with a wrong key succeeded")
    except CentUnauthorizedError:
        pass
    try:
        await api.publish(PublishRequest(channel="nosuchnamespace:x", data={}))
        raise CheckFailed("publish to an unknown namespace succeeded")
    except CentApiResponseError as e:
        expect(e.code == 102, f"unknown namespace error {e.code} {e.message!r}, want 102")
    passed("8 errors", "wrong key -> 401, unknown namespace -> 102")

    # 9. disconnect with a custom code: the SDK reports it, and does not reconnect (4501).
    await api.disconnect(DisconnectRequest(
        user="alice", disconnect=Disconnect(code=4501, reason="bye from cent")))
    gone = await events.wait("alice disconnected", "disconnected")
    expect((gone.code, gone.reason) == (4501, "bye from cent"),
           f"disconnect {gone.code} {gone.reason!r}, want 4501 'bye from cent'")
    passed("9 disconnect", f"alice closed with {gone.code} {gone.reason!r}")


if __name__ == "__main__":
    sys.exit(run_checks(run))
