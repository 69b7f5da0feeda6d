"""The hiring funnel: candidates of a pipeline, and their invitations to its stages.

A candidate is invited to one stage at a time with a signed link that expires and works once:
starting it creates the candidate's solo room for that stage (a coding task's room holds the
starter files and the visible tests, never the hidden ones; a multiple-choice test's room holds
its questions, without their answers, in ``meta.mcq``).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from rooms.assessments import CodingTask, McqTest, Pipeline, Stage
from rooms.errors import BadRequest, Conflict, Forbidden, RoomNotFound, Unauthorized

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
MAX_CANDIDATES_PER_CALL = 1000


@dataclass(frozen=True, slots=True)
class NewCandidate:
    name: str
    email: str


def parse_candidates(value: Any) -> list[NewCandidate]:
    """``[{"name", "email"}, ...]``, every bad row named (by its index) in one error."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CANDIDATES_PER_CALL:
        raise BadRequest(f"'candidates' must be a list of 1 to {MAX_CANDIDATES_PER_CALL} rows")
    problems = []
    rows = []
    seen: set[str] = set()
    for i, row in enumerate(value):
        if not isinstance(row, dict) or set(row) != {"name", "email"}:
            problems.append(f"row {i}: must be {{'name', 'email'}}")
            continue
        name, email = row["name"], row["email"]
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 80:
            problems.append(f"row {i}: name must be 1 to 80 characters")
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            problems.append(f"row {i}: {email!r} is not an e-mail address")
        elif email.strip().lower() in seen:
            problems.append(f"row {i}: {email!r} appears twice")
        else:
            seen.add(email.strip().lower())
            rows.append(NewCandidate(str(name).strip(), email.strip().lower()))
    if problems:
        raise BadRequest("nothing imported: " + "; ".join(problems))
    return rows


def parse_candidate_csv(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """Rows of a ``name,email`` CSV (a header line is required), and a problem per bad row
    naming its line."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    if "name" not in header or "email" not in header:
        return [], ["line 1: the first line must name the columns, with 'name' and 'email'"]
    name_at, email_at = header.index("name"), header.index("email")
    rows, problems, seen = [], [], set()
    for line, fields in enumerate(reader, start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) <= max(name_at, email_at):
            problems.append(f"line {line}: {len(fields)} column(s), expected {len(header)}")
            continue
        name, email = fields[name_at].strip(), fields[email_at].strip().lower()
        if not 1 <= len(name) <= 80:
            problems.append(f"line {line}: name must be 1 to 80 characters")
        elif not _EMAIL.match(email):
            problems.append(f"line {line}: {fields[email_at]!r} is not an e-mail address")
        elif email in seen:
            problems.append(f"line {line}: {email} appears twice")
        else:
            seen.add(email)
            rows.append({"name": name, "email": email})
    return rows, problems


class InviteSigner:
    """Invitation links: ``<invitation id>.<expiry>.<signature>``, HMAC-SHA256."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"clarityhire-invite:" + secret.encode()).digest()

    def mint(self, invitation_id: str, expires_s: int) -> str:
        body = f"{invitation_id}.{expires_s}"
        return f"{body}.{self._sign(body)}"

    def verify(self, token: str) -> str:
        """The invitation id of a valid, unexpired link; raises ``Unauthorized``."""
        invitation_id, _, rest = token.partition(".")
        expires, _, signature = rest.partition(".")
        body = f"{invitation_id}.{expires}"
        if not signature or not hmac.compare_digest(signature, self._sign(body)):
            raise Unauthorized("this invitation link is damaged or was not issued here")
        if not expires.isdigit() or int(expires) <= time.time():
            raise Unauthorized("this invitation has expired: ask the recruiter for a new one")
        return invitation_id

    def _sign(self, body: str) -> str:
        digest = hmac.new(self._key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


def check_invitation(invitation: dict[str, Any] | None) -> dict[str, Any]:
    """An invitation that can still be started; raises with the reason a candidate reads."""
    if invitation is None:
        raise RoomNotFound("this invitation does not exist (any more)")
    if invitation["used_us"] is not None:
        raise Conflict("this invitation was already used: each link works once")
    if invitation["expires_us"] <= time.time() * 1e6:
        raise Forbidden("this invitation has expired: ask the recruiter for a new one")
    return invitation


def stage_of(pipeline: Pipeline, stage_id: str) -> Stage:
    for stage in pipeline.stages:
        if stage.id == stage_id:
            return stage
    raise RoomNotFound(f"pipeline {pipeline.id!r} has no stage {stage_id!r}")


def room_files(assessment: McqTest | CodingTask) -> dict[str, str]:
    """What the candidate's room starts with: the starter files and visible tests of a task;
    a multiple-choice test needs no files."""
    if isinstance(assessment, CodingTask):
        return {**assessment.starter, **assessment.visible_tests}
    return {}


def interview_files(stage: Stage) -> dict[str, str]:
    """What an interview room without a take-home opens with: a design round's document, or
    the candidate-visible agenda of a behavioural round (the interviewer's own notes are the
    room's private notes panel), each headed by the stage's prompt."""
    prompt = f"{stage.prompt}\n\n" if stage.prompt else ""
    if stage.type == "design":
        sections = ("Requirements", "API", "Data model", "Components", "Scaling", "Trade-offs")
        body = "".join(f"## {section}\n\n" for section in sections)
        return {"design.md": f"# System design\n\n{prompt}{body}"}
    if stage.type == "behavioural":
        return {"agenda.md": f"# Conversation\n\n{prompt}"}
    return {"main.py": "".join(f"# {line}\n" for line in (stage.prompt or "").splitlines())}


def public_questions(test: McqTest, candidate_id: str) -> list[dict[str, Any]]:
    """The questions as the candidate sees them: no answers, shuffled per candidate when the
    test says so (the same order on every reload)."""
    questions = [
        {"id": q.id, "prompt": q.prompt, "choices": list(q.choices), "multiple": q.multiple}
        for q in test.questions
    ]
    if test.shuffle:
        seed = int.from_bytes(hashlib.sha256(f"{test.id}:{candidate_id}".encode()).digest()[:8])
        questions.sort(key=lambda q: hashlib.sha256(f"{seed}:{q['id']}".encode()).digest())
    return questions


def advancing(
    scores: dict[str, float], score_min: float | None, percentile: float | None
) -> set[str]:
    """Who passes a stage: a score of at least ``score_min``, or a place in the top
    ``100 - percentile`` percent (with 10 candidates and percentile 60: the best 4; ties at
    the cut all pass)."""
    if score_min is not None:
        return {c for c, s in scores.items() if s >= score_min}
    if percentile is None or not scores:
        return set(scores)
    keep = max(1, round(len(scores) * (100 - percentile) / 100)) if percentile < 100 else 0
    ranked = sorted(scores.values(), reverse=True)
    if keep == 0:
        return set()
    cut = ranked[keep - 1]
    return {c for c, s in scores.items() if s >= cut}
