"""Server-rendered pages: the landing page and the page a participant link opens."""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from rooms.errors import RoomError
from rooms.registry import RoomRegistry
from server.settings import Settings
from server.tokens import TokenSigner

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:3rem auto;padding:0 1rem;color:#222}
code,pre{background:#f4f4f4;border-radius:4px;padding:.1rem .3rem}pre{padding:.8rem;overflow:auto}
.error{border-left:4px solid #c33;padding-left:1rem}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)} · ClarityHire</title><style>{_STYLE}</style>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status)


class Pages:
    def __init__(self, settings: Settings, registry: RoomRegistry, signer: TokenSigner) -> None:
        self.settings = settings
        self.registry = registry
        self.signer = signer

    def routes(self) -> list[Route]:
        return [
            Route("/", self.landing, methods=["GET"]),
            Route("/rooms/{room_id}", self.room_link, methods=["GET"]),
        ]

    async def landing(self, request: Request) -> HTMLResponse:
        base = escape(self.settings.base_url)
        return _page(
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
        room_id = request.path_params["room_id"]
        try:
            claims = self.signer.verify(request.query_params.get("token"), room_id)
            info = await self.registry.info(room_id)
        except RoomError as e:
            return _page(
                "Link problem",
                f"""<h1>This link cannot open the room</h1>
<p class=error>{escape(e.reason)}.</p>
<p>Ask the person who invited you for a new link. Links are personal, work for one room only,
and expire.</p>""",
                status=e.status,
            )
        who = claims.participant
        ws = self.settings.ws_url(info.id)
        return _page(
            "Room",
            f"""<h1>Room {escape(info.id)}</h1>
<p>You are <strong>{escape(who.name)}</strong>, joining as <strong>{who.role.value}</strong>
in a {info.kind.value} {escape(info.language)} room.</p>
<p>The room's shared document is served over the standard y-websocket protocol at</p>
<pre>{escape(ws)}?token=…</pre>
<p>Any Yjs client (the <code>y-websocket</code> provider, or pycrdt) can edit it with the token
of this link.</p>""",
        )
