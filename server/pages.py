"""Server-rendered pages: the landing page, the room page a participant link opens, its
replay, and a pipeline's candidate list.

The room page is a small HTML shell around the web bundle (``web/``, built into
``settings.web_path`` and served under ``/assets/``). The link's token is checked here first,
so an expired, tampered or other-room link gets a page that says what is wrong instead of an
app that cannot connect.
"""

from __future__ import annotations

from html import escape
from typing import Any

import orjson
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from rooms.errors import Forbidden, RoomError
from rooms.registry import RoomRegistry
from rooms.timeline import Timeline
from rooms.types import Role
from server.doc_socket import NOTES_ROLES
from server.settings import Settings
from server.tokens import TokenSigner

# The room shows run outputs (HTML sanitized in the page): even if something slipped through,
# nothing may load or run from elsewhere, nor send data anywhere but this server.
ROOM_PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
NO_FAVICON = "<link rel=icon href='data:,'>"

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#222}
code,pre{background:#f4f4f4;border-radius:4px;padding:.1rem .3rem}pre{padding:.8rem;overflow:auto}
.error{border-left:4px solid #c33;padding-left:1rem}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A plain server-rendered page in the style of the landing page."""
    html = (
        f"<!doctype html><html lang=en><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)} · ClarityHire</title>{NO_FAVICON}<style>{_STYLE}</style>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)


class Pages:
    def __init__(
        self, settings: Settings, registry: RoomRegistry, signer: TokenSigner, timeline: Timeline
    ) -> None:
        self.settings = settings
        self.timeline = timeline
        self.registry = registry
        self.signer = signer

    def routes(self) -> list[BaseRoute]:
        # The bundle is ~750 kB of JavaScript; compressed it is a quarter of that.
        assets = GZipMiddleware(StaticFiles(directory=self.settings.web_path, check_dir=False))
        return [
            Route("/", self.landing, methods=["GET"]),
            Route("/rooms/{room_id}", self.room_link, methods=["GET"]),
            Route("/rooms/{room_id}/replay", self.replay, methods=["GET"]),
            Route("/pipelines/{pipeline_id}", self.pipeline, methods=["GET"]),
            Mount("/assets", assets, name="assets"),
        ]

    async def landing(self, request: Request) -> HTMLResponse:
        base = escape(self.settings.base_url)
        return page(
            "Interview server",
            f"""<h1>ClarityHire</h1>
<p>A self-hosted server for technical interviews: shared code rooms edited live by interviewer
and candidate, recorded update by update so that every session can be replayed.</p>
<h2>Create a room</h2>
<pre>curl -s -X POST {base}/api/rooms \\
  -H "Authorization: Bearer $CLARITYHIRE_ADMIN_KEY" -H 'content-type: application/json' \\
  -d '{{"kind": "live", "language": "python", "files": {{"main.py": "print(1)"}}}}'</pre>
<p>Then mint a link for each participant:</p>
<pre>curl -s -X POST {base}/api/rooms/ROOM_ID/tokens \\
  -H "Authorization: Bearer $CLARITYHIRE_ADMIN_KEY" -H 'content-type: application/json' \\
  -d '{{"role": "candidate", "name": "Ada"}}'</pre>
<p>Roles: <code>interviewer</code>, <code>candidate</code>, <code>observer</code> and
<code>reviewer</code> (the last two read-only).</p>""",
        )

    async def room_link(self, request: Request) -> HTMLResponse:
        """``GET /rooms/{id}?token=``: the live room page."""
        return await self._app_page(request, "room", "Room")

    async def replay(self, request: Request) -> HTMLResponse:
        """``GET /rooms/{id}/replay?token=``: the reviewer's replay of the room."""
        return await self._app_page(request, "replay", "Replay", (Role.REVIEWER,))

    async def pipeline(self, request: Request) -> HTMLResponse:
        """``GET /pipelines/{id}``: the hiring team's candidate list. The page asks for the
        admin key (or reads it from the ``#key=`` fragment) and calls the admin API itself, so
        the shell holds nothing secret."""
        pipeline_id = request.path_params["pipeline_id"]
        return self._shell("pipeline", f"Candidates {pipeline_id}", {"pipeline": pipeline_id})

    async def _app_page(
        self, request: Request, entry: str, title: str, roles: tuple[Role, ...] = ()
    ) -> HTMLResponse:
        """The page of a bundle entry for a room, after the link's token has been checked."""
        room_id = request.path_params["room_id"]
        try:
            claims = self.signer.verify(request.query_params.get("token"), room_id)
            info = await self.registry.info(room_id)
            if roles and claims.participant.role not in roles:
                raise Forbidden(f"this page is for {', '.join(r.value for r in roles)}s")
        except RoomError as e:
            return page(
                "Link problem",
                f"""<h1>This link cannot open the room</h1>
<p class=error>{escape(e.reason)}.</p>
<p>Ask the person who invited you for a new link. Links are personal, work for one room only,
and expire.</p>""",
                status=e.status,
            )
        who = claims.participant
        config: dict[str, Any] = {
            "room": info.to_json(),
            "participant": {"id": who.id, "name": who.name, "role": who.role.value},
            "notes": who.role in NOTES_ROLES,
            "expires_at": claims.expires_at,
        }
        if entry == "room" and info.seeded_from is not None:
            # The take-home as submitted, for the live page's "changes since" view.
            seed = await self.timeline.state_at(info.id, info.created_us // 1000)
            config["submitted_files"] = seed["files"]
        return self._shell(entry, f"{title} {info.id}", config)

    def _shell(self, entry: str, title: str, config: dict[str, Any]) -> HTMLResponse:
        """The HTML page around a bundle entry, with its configuration as JSON."""
        version = self._bundle_version(entry)
        if version is None:
            return page(
                "Page not built",
                """<h1>This page has not been built</h1>
<p class=error>This server has no web bundle in its <code>web_dir</code>.</p>
<p>Build it with <code>make web</code> (or <code>make run</code>, which builds it too) and
reload this page. Your link is valid.</p>""",
                status=503,
            )
        # "<" escaped so that no value can close the script element early.
        config_json = orjson.dumps(config).decode().replace("<", "\\u003c")
        return HTMLResponse(
            f"""<!doctype html><html lang=en><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>{escape(title)} · ClarityHire</title>{NO_FAVICON}
<link rel=stylesheet href="/assets/{entry}.css?v={version}">
<script id=page-config type="application/json">{config_json}</script>
<body><div id=app><p class=loading>Loading…</p></div>
<noscript>This page needs JavaScript.</noscript>
<script type=module src="/assets/{entry}.js?v={version}"></script>
</body></html>""",
            headers={
                "cache-control": "no-store",
                "referrer-policy": "no-referrer",
                "content-security-policy": ROOM_PAGE_POLICY,
            },
        )

    def _bundle_version(self, entry: str) -> str | None:
        """A tag that changes whenever the bundle is rebuilt (for cache busting), or None
        when it has not been built."""
        stamps = []
        for name in (f"{entry}.js", f"{entry}.css"):
            try:
                stat = (self.settings.web_path / name).stat()
            except OSError:
                return None
            stamps.append(f"{stat.st_mtime_ns:x}{stat.st_size:x}")
        return "-".join(stamps)
