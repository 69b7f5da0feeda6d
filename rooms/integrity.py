"""Integrity signals: how a submission came to be, read from its recorded history.

Each signal looks at the candidate's edits (replayed from the update log, see
``rooms/timeline.py``) and the browser's own signals (paste, blur, visibility), and says whether
it fired, how strongly (0 to 1), why, and at which moments of the replay. The report's score is
the sum of weight x strength of the signals that fired and were not dismissed, capped at 100.

What this is not: proof. Fast typists exist, tabs are left for good reasons, a candidate may
paste their own code from another editor. Every flag points at moments a reviewer can watch in
the replay and judge; the score only orders what to watch first.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from dataclasses import dataclass, field
from typing import Any

from rooms.document import files_of, load_doc
from rooms.similarity import compare
from rooms.store import SqlStore
from rooms.timeline import (
    UNREPORTED_PASTE_CHARS,
    Attribution,
    Edit,
    Timeline,
    replay_with_attribution,
)
from rooms.types import SYSTEM_AUTHOR, EntryKind, LogEntry, TimelineEvent

# Thresholds, each chosen so that the steady human typing of the test sessions stays quiet.
PASTED_SHARE_MIN = 0.15  # of the candidate's final code
BULK_CHARS = UNREPORTED_PASTE_CHARS  # one keystroke-level update inserting this much
BURST_CHARS = 30  # this many characters in a row ...
BURST_GAP_MS = 25  # ... each within this long of the previous one (people: ~100-250 ms)
STALL_MS_PER_CHAR = 60  # a burst after a pause this long per character is a stalled network
ABSENCE_MIN_S = 30.0  # away from the tab at least this long ...
RETURN_WINDOW_S = 15.0  # ... then within this long after coming back ...
RETURN_BULK_CHARS = 60  # ... at least this much code in a few updates
RETURN_BULK_UPDATES = 3
CORRECTIONS_MIN_TYPED = 200  # typed characters before "no corrections" can say anything
CORRECTIONS_MAX_SHARE = 0.02  # deleted / typed below this: no edits people make
FIRST_KEY_LATE_S = 15 * 60.0
CONTEXT_S = 60.0  # runs within this long of a flag are listed with it

WEIGHTS = {
    "pasted_share": 30,
    "unreported_insertion": 25,
    "typing_burst": 25,
    "away_then_insert": 20,
    "no_corrections": 15,
    "late_first_keystroke": 5,
}


@dataclass(slots=True)
class Flag:
    signal: str
    strength: float
    times: list[int]  # ms since the epoch: where to look in the replay
    detail: str
    run_times: list[int] = field(default_factory=list)  # ms, of runs near the flag

    def to_json(self, dismissed: dict[str, Any] | None) -> dict[str, Any]:
        weight = WEIGHTS[self.signal]
        return {
            "signal": self.signal,
            "weight": weight,
            "strength": round(self.strength, 2),
            "contribution": 0 if dismissed else round(weight * self.strength, 1),
            "times": self.times,
            "detail": self.detail,
            "runs_nearby": self.run_times,
            "dismissed": dismissed,
        }


@dataclass(frozen=True, slots=True)
class Session:
    """What the signals read: the candidate's edits, the browser's signals, when it began."""

    edits: list[Edit]  # the candidates' own, in order
    signals: list[TimelineEvent]  # signal.* events of the candidates
    runs: list[TimelineEvent]
    started_us: int | None  # the round going live (or the first join)
    final_chars: list[Any]  # attribution of the final code (Attribution.files values, flat)
    candidates: frozenset[str]


def session_of(
    attribution: Attribution, events: list[TimelineEvent], candidates: frozenset[str]
) -> Session:
    def mine(author: str) -> bool:
        return author in candidates

    started = [e.at_us for e in events if e.type == "round.live"]
    joins = [e.at_us for e in events if e.type == "join" and mine(e.author)]
    return Session(
        edits=[e for e in attribution.edits if mine(e.author) and e.kind != EntryKind.SEED],
        signals=[e for e in events if e.type.startswith("signal.") and mine(e.author)],
        runs=[e for e in events if e.type == "run"],
        started_us=next(iter(started or joins), None),
        final_chars=[c for chars in attribution.files.values() for c in chars],
        candidates=candidates,
    )


def assess(session: Session) -> list[Flag]:
    """Every signal that fires on the session."""
    flags = [
        *pasted_share(session),
        *unreported_insertions(session),
        *typing_bursts(session),
        *away_then_insert(session),
        *no_corrections(session),
        *late_first_keystroke(session),
    ]
    for flag in flags:
        flag.run_times = [
            r.at_us // 1000
            for r in session.runs
            if any(abs(r.at_us // 1000 - t) <= CONTEXT_S * 1000 for t in flag.times)
        ]
    return flags


def score(flags: list[Flag], dismissed: set[tuple[str, int]]) -> int:
    total = sum(
        WEIGHTS[f.signal] * f.strength for f in flags if (f.signal, f.times[0]) not in dismissed
    )
    return min(100, round(total))


# -- the signals ---------------------------------------------------------------------------------


def pasted_share(session: Session) -> list[Flag]:
    """Share of the candidate's final code that arrived in reported pastes."""
    own = [c for c in session.final_chars if c.author in session.candidates]
    if not own:
        return []
    pasted = [c for c in own if c.origin == "paste" and c.reported]
    share = len(pasted) / len(own)
    if share < PASTED_SHARE_MIN:
        return []
    times = sorted({e.at_us // 1000 for e in session.edits if e.origin == "paste" and e.reported})
    return [
        Flag(
            "pasted_share",
            min(1.0, share / 0.5),
            times,
            f"{share:.0%} of the candidate's final code arrived in pastes they made "
            f"({len(pasted)} of {len(own)} characters)",
        )
    ]


def unreported_insertions(session: Session) -> list[Flag]:
    """Large insertions in one keystroke-level update with no paste signal."""
    bulk = [
        e
        for e in session.edits
        if e.kind == EntryKind.UPDATE and len(e.inserted) >= BULK_CHARS and not e.reported
    ]
    if not bulk:
        return []
    chars = sum(len(e.inserted) for e in bulk)
    return [
        Flag(
            "unreported_insertion",
            min(1.0, len(bulk) / 2),
            [e.at_us // 1000 for e in bulk],
            f"{len(bulk)} insertion(s) of {BULK_CHARS}+ characters ({chars} in all) arrived in "
            "one update each without a paste signal: typed by a tool, or pasted with the "
            "signal suppressed",
        )
    ]


def typing_bursts(session: Session) -> list[Flag]:
    """Runs of characters arriving faster than people type."""
    keys = [e for e in session.edits if e.kind == EntryKind.UPDATE and 0 < len(e.inserted) <= 3]
    gaps = [(b.at_us - a.at_us) / 1000 for a, b in itertools.pairwise(keys)]
    bursts: list[tuple[int, int]] = []  # (start time, characters)

    def close(start: int, chars: int) -> None:
        # Times are the server's: after a network stall, keys typed at a person's pace
        # during it arrive all at once. Such a burst is no faster than the stall was long.
        stall_ms = gaps[start - 1] if start > 0 else 0.0
        if chars >= BURST_CHARS and stall_ms < chars * STALL_MS_PER_CHAR:
            bursts.append((keys[start].at_us // 1000, chars))

    start, run_chars = 0, 0
    for i, gap in enumerate(gaps):
        if gap < BURST_GAP_MS:
            if run_chars == 0:
                start, run_chars = i, len(keys[i].inserted)
            run_chars += len(keys[i + 1].inserted)
        else:
            if run_chars:
                close(start, run_chars)
            run_chars = 0
    if run_chars:
        close(start, run_chars)
    if not bursts:
        return []
    median = statistics.median(gaps) if gaps else 0
    return [
        Flag(
            "typing_burst",
            min(1.0, len(bursts) / 2),
            [t for t, _ in bursts],
            f"{len(bursts)} burst(s) of {BURST_CHARS}+ characters each under {BURST_GAP_MS} ms "
            f"apart (longest {max(n for _, n in bursts)}); the candidate's median gap between "
            f"keys is {median:.0f} ms",
        )
    ]


def absences(signals: list[TimelineEvent]) -> list[tuple[int, int]]:
    """(left, came back) in µs, from blur/focus and visibility hidden/visible signals."""
    result = []
    left: int | None = None
    for s in signals:
        leaving = s.type == "signal.blur" or (
            s.type == "signal.visibility" and s.data.get("state") == "hidden"
        )
        back = s.type == "signal.focus" or (
            s.type == "signal.visibility" and s.data.get("state") == "visible"
        )
        if leaving and left is None:
            left = s.at_us
        elif back and left is not None:
            result.append((left, s.at_us))
            left = None
    return result


def away_then_insert(session: Session) -> list[Flag]:
    """Long absences from the tab followed at once by a lot of new code."""
    hits = []
    for left, back in absences(session.signals):
        if (back - left) / 1e6 < ABSENCE_MIN_S:
            continue
        after = [
            e
            for e in session.edits
            if e.inserted and back <= e.at_us <= back + RETURN_WINDOW_S * 1e6
        ]
        big = sorted(after, key=lambda e: -len(e.inserted))[:RETURN_BULK_UPDATES]
        if sum(len(e.inserted) for e in big) >= RETURN_BULK_CHARS:
            hits.append((left, back, sum(len(e.inserted) for e in after)))
    if not hits:
        return []
    return [
        Flag(
            "away_then_insert",
            min(1.0, len(hits) / 2),
            [t for left, back, _ in hits for t in (left // 1000, back // 1000)],
            "; ".join(
                f"away {(back - left) / 1e6:.0f} s, then {chars} characters within "
                f"{RETURN_WINDOW_S:.0f} s of coming back"
                for left, back, chars in hits
            ),
        )
    ]


def no_corrections(session: Session) -> list[Flag]:
    """Code typed straight through at a person's pace, without the deletions people make
    along the way (what a tool types in a burst is the burst signal's business)."""
    typed = []
    previous: Edit | None = None
    for edit in session.edits:
        human_pace = previous is None or (edit.at_us - previous.at_us) / 1000 >= BURST_GAP_MS
        if edit.origin == "typed" and edit.inserted and human_pace:
            typed.append(edit)
        previous = edit
    typed_chars = sum(len(e.inserted) for e in typed)
    deleted = sum(e.deleted for e in session.edits)
    if typed_chars < CORRECTIONS_MIN_TYPED or deleted / typed_chars >= CORRECTIONS_MAX_SHARE:
        return []
    return [
        Flag(
            "no_corrections",
            1.0,
            [typed[0].at_us // 1000, typed[-1].at_us // 1000],
            f"{typed_chars} characters typed with {deleted} deleted "
            f"({deleted / typed_chars:.1%}); people usually correct 5-20% as they go",
        )
    ]


def late_first_keystroke(session: Session) -> list[Flag]:
    if session.started_us is None or not session.edits:
        return []
    first = session.edits[0].at_us
    waited = (first - session.started_us) / 1e6
    if waited < FIRST_KEY_LATE_S:
        return []
    return [
        Flag(
            "late_first_keystroke",
            1.0,
            [session.started_us // 1000, first // 1000],
            f"the first keystroke came {waited / 60:.0f} minutes after the start",
        )
    ]


# -- the report -----------------------------------------------------------------------------------

LIMITS = (
    "Signals describe how the code arrived; they are not proof of anything. Watch the moments "
    "they point to in the replay before drawing a conclusion, and dismiss a flag with a note "
    "when it has an innocent explanation."
)
SIMILAR_ROOMS_LIMIT = 50
SIMILARITY_MIN_SHARE = 0.35  # shared idioms reach ~0.2 between unrelated solutions


def _files(entries: list[LogEntry]) -> dict[str, str]:
    return files_of(load_doc([e.update for e in entries]))


class IntegrityReports:
    """Integrity reports of rooms, computed from their recordings when asked."""

    def __init__(self, store: SqlStore, timeline: Timeline) -> None:
        self.store = store
        self.timeline = timeline

    async def report(self, room_id: str) -> dict[str, Any]:
        entries = await self.store.updates_until(room_id, 0, None)
        events = await self.store.events(room_id, (), 1_000_000)
        pastes = [e for e in events if e.type == "signal.paste"]
        # Seconds of CPU for a long session: off the event loop, which serves every room.
        attribution = await asyncio.to_thread(replay_with_attribution, entries, pastes)
        people = await self.timeline.participants(room_id)
        candidates = frozenset(p for p, who in people.items() if who["role"] == "candidate")
        if not candidates:  # nobody joined through the control plane: every human author
            candidates = frozenset(e.author for e in entries if e.author != SYSTEM_AUTHOR)
        flags = assess(session_of(attribution, events, candidates))
        dismissals = {
            (e.data["signal"], e.data["at"]): {
                "by": e.author,
                "note": e.data["note"],
                "at": e.at_us // 1000,
            }
            for e in events
            if e.type == "integrity.dismissed"
        }
        files = attribution.texts  # no second replay of the whole log
        starter = _files(entries[:1])
        return {
            "room": room_id,
            "score": score(flags, set(dismissals)),
            "signals": [f.to_json(dismissals.get((f.signal, f.times[0]))) for f in flags],
            "similarity": await self._similar(room_id, files, starter),
            "limits": LIMITS,
        }

    async def _similar(
        self, room_id: str, files: dict[str, str], starter: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Other submissions of the same task (the same starter files) that share code."""
        found = []
        this = await self.store.get_room(room_id)
        for other_id, seeded_from, seed in await self.store.seeds(SIMILAR_ROOMS_LIMIT):
            # A follow-up seeded from a take-home holds that very code: not a copy of it.
            related = other_id == room_id or room_id == seeded_from
            if related or (this is not None and this.seeded_from == other_id):
                continue
            if files_of(load_doc([seed])) != starter:
                continue
            other = await asyncio.to_thread(_files, await self.store.history(other_id))
            match = await asyncio.to_thread(compare, files, other, starter)
            if match.share >= SIMILARITY_MIN_SHARE:
                found.append({
                    "room": other_id,
                    "share": match.share,
                    "regions": [
                        {"file": r.file, "start": r.start, "end": r.end,
                         "other_file": r.other_file, "other_start": r.other_start,
                         "other_end": r.other_end}
                        for r in match.regions
                    ],
                })  # fmt: skip
        return sorted(found, key=lambda m: -float(m["share"]))
