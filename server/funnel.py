"""The hiring funnel over HTTP: candidates invited to a pipeline's stages, their results, and
advancing the best of a stage to the next one.

Admin (``Authorization: Bearer``):

* ``POST /api/pipelines/{id}/candidates`` ``{"candidates": [{"name", "email"}],
  "expires_in_hours"?}``: all rows or none; each gets an invitation to the first stage
  (``?dry_run=1``: check the rows, and that none is already a candidate, and import nothing);
* ``GET /api/pipelines/{id}/candidates``: the pipeline's stages, and every candidate with their
  stage results and links to each stage's room (replay, and the interviewer's link of live,
  design and behavioural rooms);
* ``POST /api/pipelines/{id}/stages/{stage}/advance``: the stage's rule (a score, or a
  percentile of everyone scored) decides; those who pass are invited to the next stage (mcq,
  task), or get its interview room made with links for interviewer and candidate (live, seeded
  from the take-home when the stage says so; design and behavioural, opened with the stage's
  prompt).

Candidates: ``GET /invite/{token}`` explains the stage; ``POST`` to it starts it (once): their
solo room is created and they are sent to it. When the room's round ends, a multiple-choice
test is scored from the answers in the room's document (root map ``answers``: question id to
the list of chosen indexes); a take-home's hidden tests run after it is submitted (and the
optional model reviewer proposes rubric scores). A reviewer's scorecard scores an interview
stage, and a take-home that had no automatic score.
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

from rooms.assessments import INTERVIEW_STAGES, CodingTask, McqTest, Pipeline, Stage, from_stored
from rooms.document import files_of
from rooms.errors import BadRequest, Conflict, RoomError, RoomNotFound
from rooms.funnel import (
    InviteSigner,
    advancing,
    check_invitation,
    interview_files,
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
from server.model_review import ModelReviewer
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
        reviewer: ModelReviewer,
    ) -> None:
        self.settings = settings
        self.execution = execution
        self.webhooks = webhooks
        self.reviewer = reviewer
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
        known = await self.store.existing_emails(pipeline.id, [p.email for p in people])
        if known:
            raise Conflict(f"nothing imported: already in this pipeline: {', '.join(known)}")
        if request.query_params.get("dry_run") == "1":
            return json_response({"ok": True, "would_invite": len(people)})
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
        people = await self.store.results(pipeline.id)
        types = {s.id: s.type for s in pipeline.stages}
        for person in people:
            for stage_id, result in person["stages"].items():
                if result["room_id"] is not None:
                    result["links"] = self._room_links(result["room_id"], types.get(stage_id))
        stages = [
            {"id": s.id, "type": s.type, "assessment": s.assessment,
             "advance": {"score": s.advance_score} if s.advance_score is not None
             else {"percentile": s.advance_percentile} if s.advance_percentile is not None
             else None}
            for s in pipeline.stages
        ]  # fmt: skip
        return json_response(
            {"pipeline": pipeline.id, "title": pipeline.title, "stages": stages,
             "candidates": people}
        )  # fmt: skip

    def _room_links(self, room_id: str, stage_type: str | None) -> dict[str, str]:
        """The hiring team's links to a stage's room: its replay, and the interviewer's seat
        in an interview room."""
        ttl = self.settings.token_ttl_seconds
        links = {}
        roles = [(Role.REVIEWER, "replay_url", "/replay")]
        if stage_type in INTERVIEW_STAGES:
            roles.append((Role.INTERVIEWER, "interviewer_url", ""))
        for role, key, path in roles:
            token, _ = self.signer.mint(room_id, role, "Hiring team", ttl)
            links[key] = f"{self.settings.base_url}/rooms/{room_id}{path}?token={token}"
        return links

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
        rooms = {c["id"]: {s: r.get("room_id") for s, r in c["stages"].items()} for c in results}
        for candidate_id in scores:
            status = "advanced" if candidate_id in passing else "rejected"
            await self.store.save_result(candidate_id, stage.id, pipeline.id, status, now)
            if status != "advanced" or following is None:
                continue
            if following.type in INTERVIEW_STAGES:
                seed = rooms[candidate_id].get(following.seed_from or "")
                live_rooms.append(await self._interview(candidate_id, pipeline, following, seed))
            else:
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

    async def _interview(
        self, candidate_id: str, pipeline: Pipeline, stage: Stage, seed: str | None
    ) -> dict[str, Any]:
        """The room of an interview stage, with links for the interviewer and the candidate:
        a live follow-up seeded from the candidate's take-home (files and whole history), or a
        room opened with the stage's prompt (a design document, or the behavioural agenda)."""
        if stage.seed_from is not None and seed is None:
            raise Conflict(f"candidate {candidate_id!r} has no {stage.seed_from} room to continue")
        candidate = await self.store.candidate(candidate_id)
        assert candidate is not None
        if seed is not None:
            language = (await self.registry.info(seed)).language
            info = await self.registry.create(RoomKind.LIVE, language, seed_from=seed)
        else:
            title = f"{pipeline.title}: {stage.id}"
            meta = {"title": title, "prompt": stage.prompt} if stage.prompt else {"title": title}
            info = await self.registry.create(
                RoomKind.LIVE, "python", interview_files(stage), meta=meta
            )
        await self.store.save_result(
            candidate_id, stage.id, pipeline.id, "scheduled", now_us(), room_id=info.id
        )
        ttl = self.settings.token_ttl_seconds
        links = {}
        for role, name in ((Role.INTERVIEWER, "Interviewer"), (Role.CANDIDATE, candidate["name"])):
            token, _ = self.signer.mint(info.id, role, name, ttl)
            links[f"{role.value}_url"] = f"{self.settings.base_url}/rooms/{info.id}?token={token}"
        return {"candidate_id": candidate_id, "stage": stage.id, "room_id": info.id, **links}

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
            await self._interview_ended(room_id)
            return
        task = asyncio.create_task(self._score(room_id, invitation))
        self._grading.add(task)
        task.add_done_callback(self._grading.discard)

    async def _interview_ended(self, room_id: str) -> None:
        result = await self.store.result_of_room(room_id)
        if result is None or result["status"] != "scheduled":
            return
        ids = (result["candidate_id"], result["stage_id"], result["pipeline_id"])
        await self.store.save_result(*ids, "completed", now_us(), room_id=room_id)
        self.webhooks.send("stage.completed", _event(*ids, room_id))

    async def scorecard_filled(self, room_id: str, card: dict[str, Any]) -> None:
        """A reviewer scored a stage's room: the scorecard is kept with the stage's result,
        and scores a stage that has no automatic score (an interview, or a take-home without
        hidden tests) as the mean of the criteria, 1 to 4 mapped to 0 to 100."""
        result = await self.store.result_of_room(room_id)
        if result is None:
            return
        ids = (result["candidate_id"], result["stage_id"], result["pipeline_id"])
        mean = sum(card["scores"].values()) / len(card["scores"])
        details = {**result["details"], "review": {**card, "mean": round(mean, 2)}}
        if result["status"] in ("scored", "advanced", "rejected"):
            await self.store.save_result(*ids, result["status"], now_us(), room_id=room_id,
                                         details=details)  # fmt: skip
            return
        score = round((mean - 1) / 3 * 100, 2)
        await self.store.save_result(*ids, "scored", now_us(), room_id=room_id, score=score,
                                     details=details)  # fmt: skip
        self.webhooks.send("stage.scored", {**_event(*ids, room_id), "score": score})

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
        event = _event(*ids, room_id)
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
            if self.reviewer.enabled:
                details["model_review"] = await self.reviewer.review(assessment, submitted, graded)
        earlier = await self.store.result_of_room(room_id)  # a reviewer may have been quicker
        details = {**(earlier["details"] if earlier else {}), **details}
        await self.store.save_result(
            *ids, "scored", now_us(), room_id=room_id, score=score, details=details
        )
        self.webhooks.send("stage.scored", {**event, "score": score})


def _event(candidate_id: str, stage_id: str, pipeline_id: str, room_id: str) -> dict[str, Any]:
    """The data of a webhook about a candidate's stage."""
    return {"pipeline": pipeline_id, "stage": stage_id, "candidate_id": candidate_id,
            "room_id": room_id}  # fmt: skip


def _invitation_problem(error: RoomError) -> HTMLResponse:
    return page(
        "Invitation",
        f"""<h1>This invitation cannot be started</h1>
<p class=error>{escape(error.reason)}.</p>
<p>If you think this is a mistake, reply to the e-mail that brought you here.</p>""",
        status=error.status,
    )
