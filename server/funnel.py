"""The hiring funnel over HTTP: candidates invited to a pipeline's stages, their results, and
advancing the best of a stage to the next one.

Admin (``Authorization: Bearer``):

* ``POST /api/pipelines/{id}/candidates`` ``{"candidates": [{"name", "email"}],
  "expires_in_hours"?}``: all rows or none; each gets an invitation to the first stage;
* ``GET /api/pipelines/{id}/candidates``: every candidate with their stage results;
* ``POST /api/pipelines/{id}/stages/{stage}/advance``: the stage's rule (a score, or a
  percentile of everyone scored) decides; those who pass are invited to the next stage.

Candidates: ``GET /invite/{token}`` explains the stage; ``POST`` to it starts it (once): their
solo room is created and they are sent to it. When the room's round ends, a multiple-choice
test is scored from the answers in the room's document (root map ``answers``: question id to
the list of chosen indexes).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from html import escape
from typing import Any

from pycrdt import Map
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from rooms.assessments import CodingTask, McqTest, Pipeline, from_stored
from rooms.document import files_of
from rooms.errors import BadRequest, Conflict, RoomError, RoomNotFound
from rooms.funnel import (
    InviteSigner,
    advancing,
    check_invitation,
    new_id,
    parse_candidates,
    public_questions,
    room_files,
    stage_of,
)
from rooms.funnel_store import FunnelStore
from rooms.registry import RoomRegistry
from rooms.room import now_us
from rooms.types import Role, RoomKind
from server.api import Endpoint, admin_only, json_object, json_response
from server.execution import Execution
from server.pages import page
from server.settings import Settings
from server.tokens import TokenSigner
from server.webhooks import Webhooks

log = logging.getLogger("clarityhire.funnel")

DEFAULT_INVITE_HOURS = 72
MAX_INVITE_HOURS = 24 * 60


class Funnel:
    def __init__(
        self,
        settings: Settings,
        store: FunnelStore,
        registry: RoomRegistry,
        signer: TokenSigner,
        invites: InviteSigner,
        execution: Execution,
        webhooks: Webhooks,
    ) -> None:
        self.settings = settings
        self.execution = execution
        self.webhooks = webhooks
        self._grading: set[asyncio.Task[None]] = set()
        self.store = store
        self.registry = registry
        self.signer = signer
        self.invites = invites

    def routes(self) -> list[Route]:
        base = "/api/pipelines/{pipeline_id}"
        return [
            Route(f"{base}/candidates", self._admin(self.invite), methods=["POST"]),
            Route(f"{base}/candidates", self._admin(self.candidates), methods=["GET"]),
            Route(f"{base}/export", self._admin(self.export), methods=["GET"]),
            Route(
                f"{base}/stages/{{stage_id}}/advance", self._admin(self.advance), methods=["POST"]
            ),
            Route("/invite/{token}", self.invitation_page, methods=["GET"]),
            Route("/invite/{token}", self.start, methods=["POST"]),
        ]

    def _admin(self, handler: Endpoint) -> Endpoint:
        return admin_only(self.settings.admin_key, handler)

    async def _assessment(self, assessment_id: str) -> Any:
        row = await self.store.assessment(assessment_id)
        if row is None:
            raise RoomNotFound(f"no assessment {assessment_id!r} is loaded")
        return from_stored(row["kind"], row["definition"])

    async def _pipeline(self, pipeline_id: str) -> Pipeline:
        pipeline = await self._assessment(pipeline_id)
        if not isinstance(pipeline, Pipeline):
            raise RoomNotFound(f"{pipeline_id!r} is not a pipeline")
        return pipeline

    def _invitation(
        self, candidate_id: str, pipeline_id: str, stage_id: str, hours: int
    ) -> dict[str, Any]:
        now = now_us()
        return {
            "id": new_id("inv"),
            "candidate_id": candidate_id,
            "pipeline_id": pipeline_id,
            "stage_id": stage_id,
            "expires_us": now + hours * 3_600_000_000,
            "used_us": None,
            "room_id": None,
            "created_us": now,
        }

    def _invite_url(self, invitation: dict[str, Any]) -> str:
        token = self.invites.mint(invitation["id"], invitation["expires_us"] // 1_000_000)
        return f"{self.settings.base_url}/invite/{token}"

    # -- admin ---------------------------------------------------------------------------------

    async def invite(self, request: Request) -> Response:
        pipeline = await self._pipeline(request.path_params["pipeline_id"])
        body = await json_object(request)
        hours = body.get("expires_in_hours", DEFAULT_INVITE_HOURS)
        if (
            isinstance(hours, bool)
            or not isinstance(hours, int)
            or not 1 <= hours <= MAX_INVITE_HOURS
        ):
            raise BadRequest(f"expires_in_hours must be an integer from 1 to {MAX_INVITE_HOURS}")
        people = parse_candidates(body.get("candidates"))
        first = pipeline.stages[0]
        now = now_us()
        rows: list[dict[str, Any]] = [
            {"id": new_id("cand"), "pipeline_id": pipeline.id, "name": p.name, "email": p.email,
             "created_us": now}
            for p in people
        ]  # fmt: skip
        invitations = [self._invitation(r["id"], pipeline.id, first.id, hours) for r in rows]
        await self.store.add_candidates(rows, invitations)
        return json_response(
            {
                "stage": first.id,
                "invited": [
                    {"candidate_id": r["id"], "name": r["name"], "email": r["email"],
                     "invite_url": self._invite_url(i)}
                    for r, i in zip(rows, invitations, strict=True)
                ],
            },
            status=201,
        )  # fmt: skip

    async def candidates(self, request: Request) -> Response:
        pipeline = await self._pipeline(request.path_params["pipeline_id"])
        return json_response(
            {"pipeline": pipeline.id, "candidates": await self.store.results(pipeline.id)}
        )

    async def export(self, request: Request) -> Response:
        """``GET /api/pipelines/{id}/export?format=csv|json``: one row per candidate, with
        each stage's status and score."""
        pipeline = await self._pipeline(request.path_params["pipeline_id"])
        people = await self.store.results(pipeline.id)
        fmt = request.query_params.get("format", "json")
        if fmt == "json":
            return json_response({"pipeline": pipeline.id, "candidates": people})
        if fmt != "csv":
            raise BadRequest("format is csv or json")
        out = io.StringIO()
        writer = csv.writer(out)
        stages = [s.id for s in pipeline.stages]
        writer.writerow(["candidate_id", "name", "email"]
                        + [f"{s}_{f}" for s in stages for f in ("status", "score")])  # fmt: skip
        for person in people:
            cells = [person["id"], person["name"], person["email"]]
            for stage in stages:
                result = person["stages"].get(stage, {})
                score = result.get("score")
                cells += [result.get("status", ""), "" if score is None else score]
            writer.writerow(cells)
        filename = f"{pipeline.id}-candidates.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    async def advance(self, request: Request) -> Response:
        pipeline = await self._pipeline(request.path_params["pipeline_id"])
        stage = stage_of(pipeline, request.path_params["stage_id"])
        results = await self.store.results(pipeline.id)
        scores = {
            c["id"]: float(c["stages"][stage.id]["score"])
            for c in results
            if c["stages"].get(stage.id, {}).get("status") == "scored"
        }
        passing = advancing(scores, stage.advance_score, stage.advance_percentile)
        index = pipeline.stages.index(stage)
        following = pipeline.stages[index + 1] if index + 1 < len(pipeline.stages) else None
        now = now_us()
        invitations = []
        live_rooms = []
        rooms = {
            c["id"]: c["stages"][stage.id].get("room_id") for c in results if c["id"] in scores
        }
        for candidate_id in scores:
            status = "advanced" if candidate_id in passing else "rejected"
            await self.store.save_result(candidate_id, stage.id, pipeline.id, status, now)
            follow_up = following is not None and following.type == "live"
            seeded = following is not None and following.seed_from == stage.id
            if status == "advanced" and follow_up and seeded:
                live_rooms.append(await self._follow_up(candidate_id, rooms[candidate_id]))
            if status == "advanced" and following is not None and following.type in ("mcq", "task"):
                invitations.append(
                    self._invitation(candidate_id, pipeline.id, following.id, DEFAULT_INVITE_HOURS)
                )
        await self.store.add_invitations(invitations)
        return json_response(
            {
                "stage": stage.id,
                "advanced": sorted(passing),
                "rejected": sorted(set(scores) - passing),
                "next_stage": following.id if following else None,
                "invited": [{"candidate_id": i["candidate_id"], "invite_url": self._invite_url(i)}
                            for i in invitations],
                "live_rooms": live_rooms,
            }
        )  # fmt: skip

    async def _follow_up(self, candidate_id: str, takehome_room: str | None) -> dict[str, Any]:
        """A live room seeded from the candidate's submitted take-home (files and history),
        with links for the interviewer and the candidate."""
        if takehome_room is None:
            raise Conflict(f"candidate {candidate_id!r} has no take-home room to continue from")
        candidate = await self.store.candidate(candidate_id)
        assert candidate is not None
        language = (await self.registry.info(takehome_room)).language
        info = await self.registry.create(RoomKind.LIVE, language, seed_from=takehome_room)
        ttl = self.settings.token_ttl_seconds
        links = {}
        for role, name in ((Role.INTERVIEWER, "Interviewer"), (Role.CANDIDATE, candidate["name"])):
            token, _ = self.signer.mint(info.id, role, name, ttl)
            links[f"{role.value}_url"] = f"{self.settings.base_url}/rooms/{info.id}?token={token}"
        return {"candidate_id": candidate_id, "room_id": info.id, **links}

    # -- candidates ----------------------------------------------------------------------------

    async def _open(self, request: Request) -> tuple[dict[str, Any], Any]:
        invitation_id = self.invites.verify(request.path_params["token"])
        invitation = check_invitation(await self.store.invitation(invitation_id))
        pipeline = await self._pipeline(invitation["pipeline_id"])
        stage = stage_of(pipeline, invitation["stage_id"])
        return invitation, await self._assessment(stage.assessment or "")

    async def invitation_page(self, request: Request) -> HTMLResponse:
        """What the stage is, and a button that starts it (a GET never uses the invitation:
        link previews and mail scanners open links too)."""
        try:
            _invitation, assessment = await self._open(request)
        except RoomError as e:
            return _invitation_problem(e)
        minutes = assessment.time_limit_s // 60
        what = "a multiple-choice test" if isinstance(assessment, McqTest) else "a coding exercise"
        return page(
            assessment.title,
            f"""<h1>{escape(assessment.title)}</h1>
<p>This is {what} with a time limit of <strong>{minutes} minutes</strong>. The clock starts
when you press Start and cannot be paused. This link works once.</p>
<form method=post><button type=submit>Start</button></form>""",
        )

    async def start(self, request: Request) -> Response:
        try:
            invitation, assessment = await self._open(request)
            return await self._start(invitation, assessment)
        except RoomError as e:
            return _invitation_problem(e)

    async def _start(
        self, invitation: dict[str, Any], assessment: McqTest | CodingTask
    ) -> Response:
        candidate = await self.store.candidate(invitation["candidate_id"])
        assert candidate is not None
        meta: dict[str, Any] = {"assessment": assessment.id, "title": assessment.title}
        if isinstance(assessment, McqTest):
            meta["mcq"] = public_questions(assessment, candidate["id"])
            language = "python"
        else:
            meta["prompt"] = assessment.prompt
            language = assessment.language
        # Claimed before anything is created: two clicks make one room.
        if not await self.store.claim_invitation(invitation["id"], now_us()):
            raise Conflict("this invitation was already used: each link works once")
        info = await self.registry.create(
            RoomKind.SOLO, language, room_files(assessment), None, assessment.time_limit_s, meta
        )
        await self.store.set_invitation_room(invitation["id"], info.id)
        await self.store.save_result(
            candidate["id"], invitation["stage_id"], invitation["pipeline_id"], "started",
            now_us(), room_id=info.id,
        )  # fmt: skip
        token, _ = self.signer.mint(
            info.id, Role.CANDIDATE, candidate["name"], assessment.time_limit_s + 3600
        )
        return RedirectResponse(f"/rooms/{info.id}?token={token}", status_code=303)

    async def round_ended(self, room_id: str) -> None:
        """A candidate's stage room ended: score a multiple-choice test from its answers, or
        start the hidden tests of a coding task (in the background: they take seconds)."""
        invitation = await self.store.invitation_of_room(room_id)
        if invitation is None:
            return
        task = asyncio.create_task(self._score(room_id, invitation))
        self._grading.add(task)
        task.add_done_callback(self._grading.discard)

    async def _score(self, room_id: str, invitation: dict[str, Any]) -> None:
        try:
            await self._score_room(room_id, invitation)
        except Exception:
            log.exception("scoring a stage failed", extra={"room": room_id})

    async def _score_room(self, room_id: str, invitation: dict[str, Any]) -> None:
        pipeline = await self._pipeline(invitation["pipeline_id"])
        assessment = await self._assessment(
            stage_of(pipeline, invitation["stage_id"]).assessment or ""
        )
        ids = (invitation["candidate_id"], invitation["stage_id"], invitation["pipeline_id"])
        event = {"pipeline": ids[2], "stage": ids[1], "candidate_id": ids[0], "room_id": room_id}
        self.webhooks.send("stage.completed", event)
        room = await self.registry.open(room_id)
        try:
            answers = room.doc.get("answers", type=Map).to_py() or {}
            submitted = files_of(room.doc)
        finally:
            self.registry.release(room)
        if isinstance(assessment, McqTest):
            score = assessment.score(answers)
            details: dict[str, Any] = {"answers": answers}
        else:
            await self.store.save_result(*ids, "submitted", now_us(), room_id=room_id)
            if assessment.language != "python" or not assessment.hidden_tests:
                return  # the harness speaks Python; a reviewer scores other tasks
            graded = await self.execution.grade(
                assessment.language, submitted, assessment.hidden_tests
            )
            score = round(100 * graded["passed"] / graded["total"], 2) if graded["total"] else 0.0
            details = {"hidden_tests": graded}
        await self.store.save_result(
            *ids, "scored", now_us(), room_id=room_id, score=score, details=details
        )
        self.webhooks.send("stage.scored", {**event, "score": score})


def _invitation_problem(error: RoomError) -> HTMLResponse:
    return page(
        "Invitation",
        f"""<h1>This invitation cannot be started</h1>
<p class=error>{escape(error.reason)}.</p>
<p>If you think this is a mistake, reply to the e-mail that brought you here.</p>""",
        status=error.status,
    )
