"""The ASGI application factory: wires settings, store, update log, rooms and routes."""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import socketio
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from rooms.funnel import InviteSigner
from rooms.funnel_store import FunnelStore
from rooms.integrity import IntegrityReports
from rooms.presence import Presence
from rooms.registry import RoomPolicy, RoomRegistry
from rooms.room import SnapshotPolicy, now_us
from rooms.rounds import RoundKeeper
from rooms.store import SqlStore, sqlite_url
from rooms.timeline import Timeline
from rooms.types import (
    LogEntry,
    Participant,
    Role,
    RoomInfo,
    RoomKind,
    Round,
    RoundState,
    TimelineEvent,
)
from rooms.update_log import UpdateLog
from server.api import RoomApi
from server.assessments import AssessmentApi
from server.cluster import Cluster
from server.control import ControlNamespace
from server.doc_socket import DocSocket
from server.execution import Execution, build_execution
from server.funnel import Funnel
from server.media import MediaConfig, MediaHub, use_ice_addresses
from server.model_review import ModelReviewConfig, ModelReviewer
from server.pages import Pages
from server.recording import check_aiortc_internals
from server.review import ReviewApi
from server.settings import Settings, resolve_secrets
from server.tokens import TokenSigner
from server.webhooks import Webhooks

log = logging.getLogger("clarityhire.app")

# Cluster mode: how often each node reads the log's heads for what no message announced.
LOG_POLL_SECONDS = 1.0
# Cluster mode: how often a node looks for call members whose node died.
CALL_SWEEP_SECONDS = 2.0
# Said to the people of a call whose node went away (the call lived there; see server/cluster.py).
CALL_LOST = "the server that carried the call went away: join again"

DEMO_FILES = {
    "main.py": (
        "def fizzbuzz(n: int) -> list[str]:\n"
        '    """Return the FizzBuzz sequence from 1 to n."""\n'
        "    out = []\n"
        "    for i in range(1, n + 1):\n"
        "        out.append(str(i))\n"
        "    return out\n\n\n"
        "print(fizzbuzz(15))\n"
    )
}


@dataclass(frozen=True, slots=True)
class Services:
    """The long-lived parts of one server, started and stopped by the app's lifespan."""

    settings: Settings
    store: SqlStore
    update_log: UpdateLog
    registry: RoomRegistry
    signer: TokenSigner
    sio: socketio.AsyncServer
    control: ControlNamespace
    presence: Presence
    rounds: RoundKeeper
    execution: Execution
    media: MediaHub
    funnel: Funnel
    cluster: Cluster | None

    async def delete_room(self, room_id: str) -> None:
        """Remove a room and everything recorded of it, in memory, in the store and on disk.
        Its connections are closed first, so that nothing more can be written for it."""
        await self.close_room(room_id)
        if self.cluster is not None:
            await self.cluster.publish_bus({"room": room_id, "event": "deleted"})
        await self.update_log.flush()
        await self.store.delete_room(room_id)
        log.info("room deleted", extra={"room": room_id})

    async def close_room(self, room_id: str) -> None:
        """Drop a deleted room from this node: connections, presence, call, kernel and the
        recordings this node made of it."""
        await self.registry.remove(room_id)  # from here on the room cannot be opened
        await self.control.close_room(room_id, "the room was deleted")
        self.presence.forget(room_id)
        self.rounds.forget(room_id)
        await self.media.end_call(room_id, "the room was deleted")
        await self.execution.forget(room_id)
        folder = self.media.config.recordings_dir / room_id
        await asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True)

    async def from_other_node(self, message: dict[str, Any]) -> None:
        """Cluster mode: a room event another node announced (see ``round_changed``)."""
        room_id = str(message["room"])
        if message["event"] == "deleted":
            await self.close_room(room_id)
        elif message["event"] == "round":
            self.rounds.refresh(room_id)
            if message["state"] == RoundState.ENDED.value:
                for key in (room_id, f"{room_id}:notes"):
                    room = self.registry.live_room(key)
                    if room is not None:
                        room.frozen = True
                await self.execution.forget(room_id)
                await self.media.end_call(room_id, "the round ended")
        elif message["event"] == "call_presence":
            await self.control.show_media(room_id, message["participant"], message["media"])
        elif message["event"] == "call_lost":
            await self.control.call_lost(room_id, CALL_LOST)

    async def sweep_calls(self, every_s: float) -> None:
        """Cluster mode, forever: those in this node's calls whose connection was on a node
        that died have left them (no leave ever comes from a dead node)."""
        assert self.cluster is not None
        while True:
            await asyncio.sleep(every_s)
            try:
                nodes = self.media.member_nodes()
                if nodes:
                    await self.media.drop_members_on(await self.cluster.dead_nodes(nodes))
            except Exception:
                log.exception("sweeping the calls failed")

    async def lease_changed(self, room_id: str, previous: str | None, owner: str) -> None:
        """Cluster mode: the node that owns a room's kernel (and snapshots) changed."""
        assert self.cluster is not None
        me = self.cluster.node_id
        room = self.registry.live_room(room_id)
        if room is not None:
            room.takes_snapshots = owner == me
        if previous == me:  # lost during a Redis outage: someone else has it now
            await self.execution.forget(room_id)
            await self.media.end_call(room_id, CALL_LOST)
        elif owner == me and previous is not None:
            # Its call went with it: first of all, so that nobody who rejoins is told again.
            await self.cluster.publish_bus({"room": room_id, "event": "call_lost"})
            await self.control.call_lost(room_id, CALL_LOST)
            text = (
                "The server running this room's code went away; code now runs on another "
                "one, in a fresh kernel (earlier variables are gone)."
            )
            await self.store.append_event(
                TimelineEvent(room_id, now_us(), "system", "kernel.moved", {"from": previous})
            )
            await self.control.notify(room_id, "notice", {"text": text})
            self.execution.prepare_soon(room_id)
            log.warning("room taken over", extra={"room": room_id, "from": previous})


def open_store(settings: Settings) -> SqlStore:
    """The durable store the settings name (not started): SQLite under data_dir by default."""
    url = settings.database_url or sqlite_url(settings.data_path / "clarityhire.db")
    return SqlStore(url, settings.database_schema)


def build_services(settings: Settings) -> Services:
    settings = resolve_secrets(settings)
    store = open_store(settings)
    cluster = (
        Cluster(settings.redis_url, settings.redis_prefix, settings.node_name)
        if settings.clustered
        else None
    )
    update_log = UpdateLog(store, settings.commit_window_s, numbered=cluster is not None)
    policy = RoomPolicy(
        snapshots=SnapshotPolicy(settings.snapshot_every_updates, settings.snapshot_every_seconds),
        idle_evict_seconds=settings.room_idle_seconds,
    )
    registry = RoomRegistry(store, update_log, policy, fanout=cluster)
    signer = TokenSigner(settings.secret_key)
    # WebSocket only: no long-polling, so no sticky sessions are needed behind a balancer.
    sio = socketio.AsyncServer(
        client_manager=control_plane_manager(settings),
        async_mode="asgi",
        transports=["websocket"],
        max_http_buffer_size=settings.control_max_payload_bytes * 4,
        ping_interval=10,
        ping_timeout=5,
    )

    # The namespace and the parts it drives refer to each other: presence and the round
    # keeper speak to the room through the namespace, which is built last.
    async def on_left(room_id: str, who: Participant) -> None:
        await control.on_left(room_id, who)

    async def notify(room_id: str, event: str, payload: dict[str, Any]) -> None:
        await control.notify(room_id, event, payload)

    async def emit(sid: str, event: str, payload: dict[str, Any]) -> None:
        await control.emit(event, payload, to=sid)

    async def record(room_id: str, author: str, type_: str, data: dict[str, Any]) -> None:
        await store.append_event(TimelineEvent(room_id, now_us(), author, type_, data))

    async def show_media(room_id: str, participant_id: str, media: Any) -> None:
        # In a cluster the call is on the room's owner; the person may be on any node.
        if cluster is not None:
            message = {"room": room_id, "event": "call_presence", "participant": participant_id}
            await cluster.publish_bus({**message, "media": media})
        await control.show_media(room_id, participant_id, media)

    async def round_changed(room_id: str, round_: Round) -> None:
        if cluster is not None:
            message = {"room": room_id, "event": "round", "state": round_.state.value}
            await cluster.publish_bus(message)
        await execution.round_changed(room_id, round_)
        if round_.state == RoundState.ENDED:
            await media.end_call(room_id, "the round ended")
            await funnel.round_ended(room_id)

    execution = build_execution(settings, registry)
    media = MediaHub(media_config(settings), emit, record, show_media)
    use_ice_addresses(media.config.ice_addresses)  # process-wide: aioice reads a module function
    presence = Presence(settings.presence_grace_seconds, on_left)
    rounds = RoundKeeper(store, registry, notify, on_change=round_changed)
    control = ControlNamespace(
        settings, signer, registry, store, presence, rounds, execution, media, cluster
    )
    sio.register_namespace(control)
    webhooks = Webhooks(
        settings.webhook_url,
        settings.webhook_secret,
        settings.webhook_attempts,
        settings.webhook_backoff_seconds,
    )
    funnel = Funnel(
        settings, FunnelStore(store), registry, signer, InviteSigner(settings.secret_key),
        execution, webhooks, ModelReviewer(model_review_config(settings)),
    )  # fmt: skip
    services = Services(
        settings, store, update_log, registry, signer, sio, control, presence, rounds, execution,
        media, funnel, cluster,
    )  # fmt: skip
    if cluster is not None:
        connect_cluster(services, cluster)
    return services


def connect_cluster(services: Services, cluster: Cluster) -> None:
    """Cluster mode: committed entries go to the other nodes, theirs come to the rooms here,
    and kernel requests go to each room's owner."""
    registry = services.registry

    async def committed(entries: list[LogEntry]) -> None:
        await cluster.publish_entries(entries)  # the other nodes first: they wait on it
        await registry.committed(entries)

    services.update_log.on_committed = committed
    # The owner keeps a room (and so its lease) while its kernel or call lives, even when its
    # own last page has gone: the room's people on other nodes still use them.
    registry.in_use = lambda room_id: (
        services.execution.has_kernel(room_id) or services.media.has_call(room_id)
    )
    services.execution.route_through(cluster)
    cluster.on_entries = registry.remote_entries
    cluster.on_awareness = registry.remote_awareness
    cluster.on_reconnect = registry.catch_up_all
    cluster.on_lease = services.lease_changed
    cluster.services["kernel"] = services.execution.handle_forwarded
    cluster.services["call"] = services.control.handle_forwarded_call
    cluster.on_bus = services.from_other_node


def control_plane_manager(settings: Settings) -> socketio.AsyncManager:
    """In a cluster, Socket.IO events go through Redis to every node's clients."""
    if not settings.clustered:
        return socketio.AsyncManager()
    return socketio.AsyncRedisManager(
        settings.redis_url, channel=f"{settings.redis_prefix}:socketio"
    )


def model_review_config(settings: Settings) -> ModelReviewConfig:
    """The review_model_* settings."""
    return ModelReviewConfig(
        settings.review_model_url,
        settings.review_model_name,
        settings.review_model_api_key,
        settings.review_model_timeout_seconds,
    )


def media_config(settings: Settings) -> MediaConfig:
    """The media_* settings, parsed."""

    def listed(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    return MediaConfig(
        mode=settings.media_mode,
        ice_servers=listed(settings.media_ice_servers),
        turn_username=settings.media_turn_username,
        turn_password=settings.media_turn_password,
        ice_addresses=listed(settings.media_ice_addresses),
        record_solo=settings.media_record_solo,
        max_participants=settings.media_max_participants,
        recordings_dir=settings.recordings_path,
    )


def create_app(settings: Settings, demo: bool = False) -> socketio.ASGIApp:
    """Build the app; with ``demo`` a demo room is created at start-up and its links printed."""
    services = build_services(settings)
    settings = services.settings
    settings.data_path.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await check_aiortc_internals()
        await services.store.start()
        services.update_log.start()
        followers: list[asyncio.Task[None]] = []
        if services.cluster is not None:
            await services.cluster.start()
            followers = [
                asyncio.create_task(services.registry.follow_log(LOG_POLL_SECONDS)),
                asyncio.create_task(services.sweep_calls(CALL_SWEEP_SECONDS)),
            ]
        await services.rounds.start()
        services.execution.start()
        if demo:
            await _announce_demo_room(services)
        # Everything allocated so far lives as long as the server: keep the cyclic garbage
        # collector from walking it again and again (a full pass over the ~250k objects that
        # the imports leave behind showed as pauses in the fan-out's p99).
        gc.freeze()
        try:
            yield
        finally:
            for follower in followers:
                follower.cancel()
            services.presence.close()
            await services.funnel.webhooks.close()
            await services.media.close()
            await services.rounds.stop()
            await services.execution.stop()
            await services.registry.close()
            await services.update_log.stop()
            if services.cluster is not None:
                await services.cluster.close()
            await services.store.close()

    api = RoomApi(
        settings,
        services.registry,
        services.signer,
        services.store,
        services.update_log,
        services.delete_room,
        services.cluster.status if services.cluster is not None else None,
    )
    timeline = Timeline(services.store)
    review = ReviewApi(
        settings,
        services.registry,
        services.signer,
        timeline,
        IntegrityReports(services.store, timeline),
        services.store,
        services.funnel.store,
        services.media.config.recordings_dir,
        services.funnel.scorecard_filled,
    )
    pages = Pages(settings, services.registry, services.signer, timeline)
    doc_socket = DocSocket(
        services.registry,
        services.signer,
        settings.max_message_bytes,
        services.rounds.arrived,
        services.cluster.is_healthy if services.cluster is not None else None,
    )
    assessments = AssessmentApi(settings, services.store)
    routes = [
        *api.routes(),
        *review.routes(),
        *assessments.routes(),
        *services.funnel.routes(),
        *pages.routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    return socketio.ASGIApp(services.sio, other_asgi_app=DocSocketFirst(app, doc_socket))


class DocSocketFirst:
    """Send ``/rooms/{id}/doc`` and ``/notes`` WebSockets straight to the document endpoint.

    It is the hot path: every keystroke passes through it, and Starlette's router and
    exception middleware would wrap each ``send`` of every fan-out in two more coroutines.
    Everything else goes to the Starlette app.
    """

    def __init__(self, app: Starlette, doc_socket: DocSocket) -> None:
        self.app = app
        self.doc_socket = doc_socket
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[1] == "rooms" and parts[2]:
                if parts[3] == "doc":
                    await self.doc_socket(parts[2], "main", scope, receive, send)
                    return
                if parts[3] == "notes":
                    await self.doc_socket(parts[2], "notes", scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _announce_demo_room(services: Services) -> None:
    settings = services.settings
    marker = settings.data_path / "demo_room"
    info: RoomInfo | None = None
    if marker.exists():
        info = await services.store.get_room(marker.read_text().strip())
    if info is None:
        info = await services.registry.create(RoomKind.LIVE, "python", DEMO_FILES)
        marker.write_text(info.id)
    lines = [f"Demo room {info.id}"]
    for role, name in ((Role.INTERVIEWER, "Interviewer"), (Role.CANDIDATE, "Candidate")):
        token, _ = services.signer.mint(info.id, role, name, settings.token_ttl_seconds)
        lines.append(f"  {role.value:<12} {settings.base_url}/rooms/{info.id}?token={token}")
    lines.append(f"  admin key    {settings.admin_key}")
    print("\n".join(lines), flush=True)
