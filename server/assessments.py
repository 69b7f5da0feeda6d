"""The assessments API (admin key): multiple-choice tests, coding tasks and pipelines from files.

``POST /api/assessments`` takes ``{"files": {name: text}}`` (see ``rooms/assessments.py`` for
the formats) and stores the whole set, or nothing: a set with problems gets 400 with every
problem's file, line and field in ``problems``. ``GET /api/assessments`` lists what is loaded
(never the definitions: hidden tests stay on the server).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rooms.assessments import load, stored_row
from rooms.errors import BadRequest
from rooms.room import now_us
from rooms.store import SqlStore
from server.api import Endpoint, admin_only, json_object, json_response
from server.settings import Settings


class AssessmentApi:
    """``/api/assessments``: load a set of files, list what is loaded."""

    def __init__(self, settings: Settings, store: SqlStore) -> None:
        self.settings = settings
        self.store = store

    def routes(self) -> list[Route]:
        return [
            Route("/api/assessments", self._admin(self.load), methods=["POST"]),
            Route("/api/assessments", self._admin(self.list_loaded), methods=["GET"]),
        ]

    def _admin(self, handler: Endpoint) -> Endpoint:
        return admin_only(self.settings.admin_key, handler)

    async def load(self, request: Request) -> Response:
        """``POST /api/assessments``: ``{"files": {name: text}}``, stored whole or refused."""
        files = (await json_object(request)).get("files")
        if (
            not isinstance(files, dict)
            or not files
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        ):
            raise BadRequest("send {'files': {file name: text}} with at least one file")
        loaded = await load_into(self.store, files)
        return json_response({"loaded": loaded}, status=201)

    async def list_loaded(self, request: Request) -> Response:
        rows = await self.store.assessments()
        return json_response(
            [{"id": r["id"], "kind": r["kind"], "title": r["title"], "source": r["source"],
              "loaded_at": r["loaded_us"] // 1000} for r in rows]
        )  # fmt: skip


async def load_into(store: SqlStore, files: dict[str, str]) -> list[dict[str, str]]:
    """Check a set of assessment files and store it whole; raises ``AssessmentError``."""
    now = now_us()
    rows = [stored_row(assessment, name, now) for name, assessment in load(files)]
    await store.save_assessments(rows)
    return [{"id": r["id"], "kind": r["kind"], "title": r["title"]} for r in rows]
