"""The funnel's tables (candidates, invitations, stage results), on the durable store's engine."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from rooms import tables
from rooms.errors import Conflict
from rooms.store import SqlStore


class FunnelStore:
    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def assessment(self, assessment_id: str) -> dict[str, Any] | None:
        a = tables.assessments.c
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(select(a.kind, a.definition).where(a.id == assessment_id))
            ).first()
        return {"kind": row.kind, "definition": row.definition} if row else None

    async def add_candidates(
        self, candidates: list[dict[str, Any]], invitations: list[dict[str, Any]]
    ) -> None:
        """Candidates and their first invitations, all in one transaction or none."""
        try:
            async with self.store.engine.begin() as conn:
                await conn.execute(insert(tables.candidates), candidates)
                await conn.execute(insert(tables.invitations), invitations)
        except IntegrityError as e:
            raise Conflict(
                "nothing imported: a candidate's e-mail is already in this pipeline"
            ) from e

    async def existing_emails(self, pipeline_id: str, emails: list[str]) -> list[str]:
        """Which of ``emails`` are already candidates of the pipeline."""
        c = tables.candidates.c
        async with self.store.engine.connect() as conn:
            rows = await conn.execute(
                select(c.email).where(c.pipeline_id == pipeline_id, c.email.in_(emails))
            )
        return sorted(row.email for row in rows)

    async def add_invitations(self, invitations: list[dict[str, Any]]) -> None:
        if invitations:
            async with self.store.engine.begin() as conn:
                await conn.execute(insert(tables.invitations), invitations)

    async def invitation(self, invitation_id: str) -> dict[str, Any] | None:
        i = tables.invitations.c
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.invitations).where(i.id == invitation_id))
            ).first()
        return dict(row._mapping) if row else None

    async def invitation_of_room(self, room_id: str) -> dict[str, Any] | None:
        i = tables.invitations.c
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.invitations).where(i.room_id == room_id))
            ).first()
        return dict(row._mapping) if row else None

    async def claim_invitation(self, invitation_id: str, now_us: int) -> bool:
        """Mark an invitation used; False if it already was (each link works once)."""
        i = tables.invitations.c
        async with self.store.engine.begin() as conn:
            result = await conn.execute(
                update(tables.invitations)
                .where(i.id == invitation_id, i.used_us.is_(None))
                .values(used_us=now_us)
            )
        return bool(result.rowcount)

    async def set_invitation_room(self, invitation_id: str, room_id: str) -> None:
        i = tables.invitations.c
        async with self.store.engine.begin() as conn:
            await conn.execute(
                update(tables.invitations).where(i.id == invitation_id).values(room_id=room_id)
            )

    async def result_of_room(self, room_id: str) -> dict[str, Any] | None:
        """The stage result a room is the attempt of, if any (details decoded)."""
        r = tables.stage_results.c
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.stage_results).where(r.room_id == room_id))
            ).first()
        if row is None:
            return None
        return {**dict(row._mapping), "details": orjson.loads(row.details)}

    async def candidate(self, candidate_id: str) -> dict[str, Any] | None:
        c = tables.candidates.c
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(select(tables.candidates).where(c.id == candidate_id))
            ).first()
        return dict(row._mapping) if row else None

    async def save_result(
        self,
        candidate_id: str,
        stage_id: str,
        pipeline_id: str,
        status: str,
        now_us: int,
        room_id: str | None = None,
        score: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Insert or replace a candidate's result for a stage."""
        r = tables.stage_results
        values = {"pipeline_id": pipeline_id, "status": status, "updated_us": now_us,
                  "room_id": room_id, "score": score,
                  "details": orjson.dumps(details or {}).decode()}  # fmt: skip
        key = and_(r.c.candidate_id == candidate_id, r.c.stage_id == stage_id)
        async with self.store.engine.begin() as conn:
            if room_id is None or score is None:
                existing = (await conn.execute(select(r.c.room_id, r.c.score).where(key))).first()
                if existing is not None:
                    values["room_id"] = room_id or existing.room_id
                    values["score"] = score if score is not None else existing.score
            changed = await conn.execute(update(r).where(key).values(**values))
            if not changed.rowcount:
                await conn.execute(
                    insert(r).values(candidate_id=candidate_id, stage_id=stage_id, **values)
                )

    async def results(self, pipeline_id: str) -> list[dict[str, Any]]:
        """Every candidate of a pipeline with their stage results."""
        c, r = tables.candidates.c, tables.stage_results.c
        async with self.store.engine.connect() as conn:
            people = (
                await conn.execute(
                    select(tables.candidates)
                    .where(c.pipeline_id == pipeline_id)
                    .order_by(c.created_us, c.email)
                )
            ).all()
            rows = (
                await conn.execute(select(tables.stage_results).where(r.pipeline_id == pipeline_id))
            ).all()
        stages: dict[str, dict[str, Any]] = {}
        for row in rows:
            stages.setdefault(row.candidate_id, {})[row.stage_id] = {
                "status": row.status,
                "score": row.score,
                "room_id": row.room_id,
                "details": orjson.loads(row.details),
            }
        return [
            {"id": p.id, "name": p.name, "email": p.email, "stages": stages.get(p.id, {})}
            for p in people
        ]
