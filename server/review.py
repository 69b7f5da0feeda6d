"""The reviewer API: a room's recording, read back (``rooms/timeline.py``), and its media files.

Readable with a reviewer token of the room (``?token=``) or the admin key
(``Authorization: Bearer``); candidate, interviewer and observer tokens, and tokens of other
rooms, are refused. Times are milliseconds since the Unix epoch. Errors are problem JSON.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from rooms.errors import BadRequest, Forbidden, RoomError, RoomNotFound
from rooms.funnel_store import FunnelStore
from rooms.integrity import WEIGHTS, IntegrityReports
from rooms.registry import RoomRegistry
from rooms.room import now_us
from rooms.scorecard import CRITERIA, parse_scorecard, prefill
from rooms.store import SqlStore
from rooms.timeline import PAGE_LIMIT, Cursor, Timeline, parse_time_ms
from rooms.types import Role, TimelineEvent
from server.api import json_object, json_response, problem, require_admin
from server.settings import Settings
from server.tokens import TokenSigner

_RECORDING_NAME = re.compile(r"^[A-Za-z0-9_-]+-\d+\.webm$")
Handler = Callable[[Request, str], Awaitable[Response]]


class ReviewApi:
    def __init__(
        self,
        settings: Settings,
        registry: RoomRegistry,
        signer: TokenSigner,
        timeline: Timeline,
        reports: IntegrityReports,
        store: SqlStore,
        funnel: FunnelStore,
        recordings_dir: Path,
        on_scorecard: Callable[[str, dict[str, Any]], Awaitable[None]],
    ) -> None:
        self.on_scorecard = on_scorecard
        self.funnel = funnel
        self.reports = reports
        self.store = store
        self.settings = settings
        self.registry = registry
        self.signer = signer
        self.timeline = timeline
        self.recordings_dir = recordings_dir

    def routes(self) -> list[Route]:
        base = "/api/rooms/{room_id}"
        return [
            Route(f"{base}/timeline", self._reviewed(self.timeline_page), methods=["GET"]),
            Route(f"{base}/state", self._reviewed(self.state), methods=["GET"]),
            Route(f"{base}/diff", self._reviewed(self.diff), methods=["GET"]),
            Route(f"{base}/provenance", self._reviewed(self.provenance), methods=["GET"]),
            Route(f"{base}/recordings/{{name}}", self._reviewed(self.recording), methods=["GET"]),
            Route(f"{base}/integrity", self._reviewed(self.integrity), methods=["GET"]),
            Route(f"{base}/scorecard", self._reviewed(self.scorecard), methods=["GET"]),
            Route(f"{base}/scorecard", self._reviewed(self.score), methods=["POST"]),
            Route(f"{base}/integrity/dismissals", self._reviewed(self.dismiss), methods=["POST"]),
        ]

    def _reviewed(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Check the reviewer's right to the room, and turn ``RoomError`` into problem JSON."""

        async def endpoint(request: Request) -> Response:
            room_id = request.path_params["room_id"]
            try:
                request.state.reviewer = self._check_reviewer(request, room_id)
                await self.registry.info(room_id)
                return await handler(request, room_id)
            except RoomError as e:
                return problem(e)

        return endpoint

    def _check_reviewer(self, request: Request, room_id: str) -> str:
        """Who is reviewing: the reviewer's participant id, or "admin"."""
        if request.headers.get("authorization"):
            require_admin(request, self.settings.admin_key)
            request.state.reviewer_name = "admin"
            return "admin"
        claims = self.signer.verify(request.query_params.get("token"), room_id)
        if claims.participant.role != Role.REVIEWER:
            raise Forbidden("only reviewers (or the admin key) read a room's recording")
        request.state.reviewer_name = claims.participant.name
        return claims.participant.id

    async def timeline_page(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/timeline?from=&to=&cursor=&limit=``."""
        q = request.query_params
        from_ms = parse_time_ms("from", q.get("from"), 0)
        to_ms = parse_time_ms("to", q.get("to"), now_us() // 1000)
        cursor = Cursor.decode(q["cursor"]) if q.get("cursor") else None
        limit = _limit(q.get("limit"))
        page = await self.timeline.page(room_id, from_ms, to_ms, cursor, limit)
        page["participants"] = await self.timeline.participants(room_id)
        return json_response({"room": room_id, **page})

    async def state(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/state?at=T``."""
        at = parse_time_ms("at", request.query_params.get("at"))
        return json_response(await self.timeline.state_at(room_id, at))

    async def diff(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/diff?from=T1&to=T2`` (``to`` defaults to now)."""
        q = request.query_params
        from_ms = parse_time_ms("from", q.get("from"))
        to_ms = parse_time_ms("to", q.get("to"), now_us() // 1000)
        return json_response(await self.timeline.diff(room_id, from_ms, to_ms))

    async def provenance(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/provenance?at=T`` (``at`` defaults to now)."""
        at = parse_time_ms("at", request.query_params.get("at"), now_us() // 1000)
        return json_response(await self.timeline.provenance(room_id, at))

    async def recording(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/recordings/{name}``: a participant's WebM, as the timeline's
        ``media.started`` events name them."""
        name = request.path_params["name"]
        path = self.recordings_dir / room_id / name
        if not _RECORDING_NAME.match(name) or not path.is_file():
            raise RoomNotFound(f"no recording {name!r} in this room")
        return FileResponse(path, media_type="video/webm")

    async def integrity(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/integrity``: the room's integrity report."""
        return json_response(await self.reports.report(room_id))

    async def dismiss(self, request: Request, room_id: str) -> Response:
        """``POST /api/rooms/{id}/integrity/dismissals``: ``{"signal", "at", "note"}``, the
        signal and first time of a flag that the reviewer has judged innocent."""
        body = await json_object(request)
        if (
            set(body) != {"signal", "at", "note"}
            or body["signal"] not in WEIGHTS
            or isinstance(body["at"], bool)
            or not isinstance(body["at"], int)
            or not isinstance(body["note"], str)
            or not 1 <= len(body["note"].strip()) <= 2000
        ):
            signals = ", ".join(WEIGHTS)
            raise BadRequest(
                f"a dismissal is {{'signal': one of {signals}, 'at': the flag's first time "
                "(ms), 'note': 1 to 2000 characters}"
            )
        data = {"signal": body["signal"], "at": body["at"], "note": body["note"].strip()}
        reviewer = request.state.reviewer
        await self.store.append_event(
            TimelineEvent(room_id, now_us(), reviewer, "integrity.dismissed", data)
        )
        return json_response({"ok": True, **data}, status=201)

    async def scorecard(self, request: Request, room_id: str) -> Response:
        """``GET /api/rooms/{id}/scorecard``: the rubric, the automatic pre-fill, the model
        reviewer's proposal (when one is configured), the hidden tests' results, and the
        scorecards reviewers have filled."""
        result = await self.funnel.result_of_room(room_id)
        details = (result or {}).get("details", {})
        tests = details.get("hidden_tests")
        info = await self.registry.info(room_id)
        round_ = await self.store.get_round(room_id)
        used = None
        if info.time_limit_s and round_.started_us and round_.ended_us:
            used = (round_.ended_us - round_.started_us) / 1e6 / info.time_limit_s
        integrity = (await self.reports.report(room_id))["score"]
        filled = await self.store.events(room_id, ("scorecard",), 1000)
        return json_response(
            {
                "criteria": [{"id": c, "description": d} for c, d in CRITERIA],
                "prefill": prefill(tests, used, integrity),
                "model_review": details.get("model_review"),
                "hidden_tests": tests,
                "scorecards": [{"by": e.author, "at": e.at_us // 1000, **e.data} for e in filled],
            }
        )

    async def score(self, request: Request, room_id: str) -> Response:
        """``POST /api/rooms/{id}/scorecard``: ``{"scores": {criterion: 1-4}, "notes"}``."""
        card = parse_scorecard(await json_object(request))
        card["name"] = request.state.reviewer_name
        event = TimelineEvent(room_id, now_us(), request.state.reviewer, "scorecard", card)
        await self.store.append_event(event)
        await self.on_scorecard(room_id, card)
        return json_response({"ok": True, **card}, status=201)


def _limit(raw: str | None) -> int:
    if raw is None:
        return PAGE_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= PAGE_LIMIT:
        raise BadRequest(f"'limit' must be an integer from 1 to {PAGE_LIMIT}")
    return int(raw)
