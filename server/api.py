"""The HTTP API: rooms and participant tokens (admin key), and health.

These paths are a public contract that other tools script against; errors are problem JSON
(``{"title", "status", "detail"}``) with the HTTP status of the ``RoomError`` raised.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rooms.errors import BadRequest, RoomError, Unauthorized
from rooms.registry import RoomRegistry
from rooms.store import SqlStore
from rooms.types import Role, RoomInfo, RoomKind
from rooms.update_log import UpdateLog
from server.settings import Settings
from server.tokens import TokenSigner

_LANGUAGE = re.compile(r"^[a-z][a-z0-9+#._-]{0,31}$")
_MAX_FILES = 200
_MAX_WORKSPACE_BYTES = 5 * 1024 * 1024
_MAX_NAME = 120


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def require_admin(request: Request, admin_key: str) -> None:
    """Raise ``Unauthorized`` unless the request carries ``Authorization: Bearer <admin key>``."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("send the admin key as 'Authorization: Bearer <key>'")
    if not hmac.compare_digest(key.encode(), admin_key.encode()):
        raise Unauthorized("wrong admin key")


Endpoint = Callable[[Request], Awaitable[Response]]


def admin_only(admin_key: str, handler: Endpoint) -> Endpoint:
    """``handler`` behind the admin key, with ``RoomError`` turned into problem JSON."""

    async def endpoint(request: Request) -> Response:
        try:
            require_admin(request, admin_key)
            return await handler(request)
        except RoomError as e:
            return problem(e)

    return endpoint


def problem(error: RoomError) -> Response:
    body: dict[str, Any] = {
        "title": type(error).__name__,
        "status": error.status,
        "detail": error.reason,
    }
    problems = getattr(error, "problems", None)
    if problems is not None:  # an assessment set: every problem, with file, line and field
        body["problems"] = [p.to_json() for p in problems]
    return Response(orjson.dumps(body), error.status, media_type="application/problem+json")


class RoomApi:
    def __init__(
        self,
        settings: Settings,
        registry: RoomRegistry,
        signer: TokenSigner,
        store: SqlStore,
        update_log: UpdateLog,
        on_delete: Callable[[str], Awaitable[None]],
        cluster_status: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.cluster_status = cluster_status  # cluster mode: this node's link to Redis
        self.on_delete = on_delete  # removes a room everywhere (Services.delete_room)
        self.registry = registry
        self.signer = signer
        self.store = store
        self.update_log = update_log

    def routes(self) -> list[Route]:
        return [
            Route("/api/rooms", self._guard(self.create_room), methods=["POST"]),
            Route("/api/rooms/{room_id}", self._guard(self.get_room), methods=["GET"]),
            Route("/api/rooms/{room_id}", self._guard(self.delete_room), methods=["DELETE"]),
            Route("/api/rooms/{room_id}/tokens", self._guard(self.mint_token), methods=["POST"]),
            Route("/healthz", self.health, methods=["GET"]),
        ]

    def _guard(self, handler: Endpoint) -> Endpoint:
        return admin_only(self.settings.admin_key, handler)

    async def create_room(self, request: Request) -> Response:
        """``POST /api/rooms``: ``{"kind", "language", "files"?, "seed_from"?,
        "time_limit_seconds"?}``."""
        body = await json_object(request)
        try:
            kind = RoomKind(body.get("kind", "live"))
        except ValueError as e:
            raise BadRequest("kind must be 'live' or 'solo'") from e
        language = body.get("language", "python")
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            raise BadRequest("language must be a short lower-case name such as 'python'")
        files = _files(body.get("files"))
        seed_from = body.get("seed_from")
        if seed_from is not None and not isinstance(seed_from, str):
            raise BadRequest("seed_from must be a room id")
        time_limit = body.get("time_limit_seconds")
        if kind == RoomKind.LIVE and time_limit is not None:
            raise BadRequest("time_limit_seconds applies to solo rooms; live rounds are ended")
        if kind == RoomKind.SOLO and time_limit is None:
            time_limit = self.settings.solo_time_limit_seconds
        if time_limit is not None and (
            isinstance(time_limit, bool) or not isinstance(time_limit, int) or time_limit < 1
        ):
            raise BadRequest("time_limit_seconds must be a positive integer")
        info = await self.registry.create(kind, language, files, seed_from, time_limit)
        return json_response(await self._room_json(info), status=201)

    async def get_room(self, request: Request) -> Response:
        """``GET /api/rooms/{id}``."""
        info = await self.registry.info(request.path_params["room_id"])
        return json_response(await self._room_json(info))

    async def delete_room(self, request: Request) -> Response:
        """``DELETE /api/rooms/{id}``: the room and everything recorded of it; 204."""
        info = await self.registry.info(request.path_params["room_id"])
        await self.on_delete(info.id)
        return Response(status_code=204)

    async def mint_token(self, request: Request) -> Response:
        """``POST /api/rooms/{id}/tokens``: ``{"role", "name", "ttl_seconds"?}``."""
        info = await self.registry.info(request.path_params["room_id"])
        body = await json_object(request)
        try:
            role = Role(str(body.get("role")))
        except ValueError as e:
            roles = ", ".join(r.value for r in Role)
            raise BadRequest(f"role must be one of {roles}") from e
        name = body.get("name", role.value.capitalize())
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 80:
            raise BadRequest("name must be 1 to 80 characters")
        ttl = body.get("ttl_seconds", self.settings.token_ttl_seconds)
        longest = self.settings.max_token_ttl_seconds
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= longest:
            raise BadRequest(f"ttl_seconds must be an integer from 1 to {longest}")
        token, claims = self.signer.mint(info.id, role, name.strip(), ttl)
        return json_response(
            {
                "token": token,
                "url": f"{self.settings.base_url}/rooms/{info.id}?token={token}",
                "room_id": info.id,
                "role": role.value,
                "participant_id": claims.participant.id,
                "name": claims.participant.name,
                "expires_at": claims.expires_at * 1000,
            },
            status=201,
        )

    async def health(self, request: Request) -> Response:
        """``GET /healthz``: 200 when the store answers, the log is committing and (in a
        cluster) Redis answers."""
        store_ok = True
        try:
            async with self.store.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            store_ok = False
        healthy = store_ok and self.update_log.last_error is None
        body: dict[str, Any] = {
            "store": "ok" if store_ok else "unreachable",
            "log_backlog": self.update_log.backlog,
            "log_error": self.update_log.last_error,
            "rooms_live": self.registry.live_count,
        }
        if self.cluster_status is not None:
            body.update(self.cluster_status())
            healthy = healthy and body["redis"] == "ok"
        body["status"] = "ok" if healthy else "degraded"
        return json_response(body, status=200 if healthy else 503)

    async def _room_json(self, info: RoomInfo) -> dict[str, Any]:
        return {
            **info.to_json(),
            "round": (await self.store.get_round(info.id)).to_json(),
            "live": self.registry.is_live(info.id),
            "doc_url": self.settings.ws_url(info.id),
            "notes_url": self.settings.ws_url(info.id, "notes"),
        }


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body as a JSON object; ``BadRequest`` when it is not one."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        raise BadRequest("the request body must be JSON") from e
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _files(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("files must be an object of file name to text")
    if len(value) > _MAX_FILES:
        raise BadRequest(f"at most {_MAX_FILES} files")
    total = 0
    for name, content in value.items():
        if not isinstance(content, str):
            raise BadRequest(f"file {name!r}: content must be text")
        parts = name.split("/")
        if (
            not name
            or len(name) > _MAX_NAME
            or name.startswith("/")
            or ".." in parts
            or "" in parts
        ):
            raise BadRequest(f"file name {name!r} is not a relative path")
        total += len(content.encode())
    if total > _MAX_WORKSPACE_BYTES:
        raise BadRequest(f"files exceed {_MAX_WORKSPACE_BYTES} bytes in all")
    return dict(value)
