"""Labelled synthetic sessions for the integrity signals: what a solo room's recording looks like
when a person types steadily, pastes a solution, lets a tool type, leaves the tab and comes back
with code, or copies someone else's work with the names changed.

A session is built as the server would have recorded it (one update per keystroke, with server
times; browser signals as timeline events) and written straight into a store, so that a real
server reports on it. ``labels`` are the signals the session is built to show, ``marks`` the
replay times (ms) where they should point.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass, field

from pycrdt import Doc, Map, Text

from rooms.document import initial_update
from rooms.store import SqlStore
from rooms.types import EntryKind, LogEntry, RoomInfo, RoomKind, TimelineEvent

CANDIDATE = "p_candidate"
STARTER = {"solution.py": 'def top_k(words, k):\n    """The k most frequent words."""\n'}
SOLUTION = """    counts = {}
    for word in words:
        counts[word] = counts.get(word, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, count in ranked[:k]]


print(top_k(["a", "b", "a", "c", "b", "a"], 2))
"""
# The same solution with every name changed and the layout touched: a copy made to look new.
RENAMED = """    tally = {}
    for token in words:
        tally[token] = tally.get(token, 0) + 1
    order = sorted(tally.items(), key=lambda pair: (-pair[1], pair[0]))
    return [token for token, n in order[:k]]


print(top_k(["x", "y", "x", "z", "y", "x"], 2))
"""
OTHER_SOLUTION = """    import collections
    best = collections.Counter(words).most_common()
    best.sort(key=lambda entry: (-entry[1], entry[0]))
    result = []
    while best and len(result) < k:
        result.append(best.pop(0)[0])
    return result
"""


@dataclass
class Session:
    info: RoomInfo
    entries: list[LogEntry] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    marks: dict[str, list[int]] = field(default_factory=dict)

    async def save(self, store: SqlStore) -> str:
        await store.create_room(self.info, self.entries[:1])
        await store.append(self.entries[1:], [])
        for event in self.events:
            await store.append_event(event)
        return self.info.id


class Typist:
    """The candidate's editor: every change becomes one logged update at the typist's clock."""

    def __init__(self, session: Session, seed: bytes, rng: random.Random, start_us: int) -> None:
        self.session = session
        self.doc: Doc = Doc()
        self.doc.apply_update(seed)
        self.text = self.doc.get("files", type=Map)["solution.py"]
        assert isinstance(self.text, Text)
        self.rng = rng
        self.now_us = start_us
        self.seq = 1

    def _change(self, change: object) -> None:
        captured: list[bytes] = []
        subscription = self.doc.observe(lambda event: captured.append(event.update))
        change()  # type: ignore[operator]
        self.doc.unobserve(subscription)
        self.seq += 1
        self.session.entries.append(
            LogEntry(self.session.info.id, self.seq, self.now_us, CANDIDATE, EntryKind.UPDATE,
                     captured[0])
        )  # fmt: skip

    def _event(self, type_: str, data: dict[str, object]) -> None:
        self.session.events.append(
            TimelineEvent(self.session.info.id, self.now_us, CANDIDATE, type_, data)
        )

    def wait(self, seconds: float) -> None:
        self.now_us += int(seconds * 1_000_000)

    @property
    def now_ms(self) -> int:
        return self.now_us // 1000

    def type(self, text: str, typo_rate: float = 0.08, gap_ms: tuple[int, int] = (70, 320)) -> None:
        """Type like a person: 70-320 ms between keys, a typo now and then, fixed at once."""
        for char in text:
            if char.isalpha() and self.rng.random() < typo_rate:
                self.wait(self.rng.randint(*gap_ms) / 1000)
                self._change(lambda: self.text.insert(len(self.text), "q"))
                self.wait(self.rng.randint(150, 400) / 1000)
                self._change(lambda: self.text.__delitem__(len(self.text) - 1))
            self.wait(self.rng.randint(*gap_ms) / 1000)
            self._change(lambda c=char: self.text.insert(len(self.text), c))

    def burst(self, text: str, gap_ms: int = 6) -> None:
        """A tool typing: one character every few milliseconds."""
        for char in text:
            self.wait(gap_ms / 1000)
            self._change(lambda c=char: self.text.insert(len(self.text), c))

    def insert(self, text: str) -> None:
        """A block arriving in one update (a paste, or a tool)."""
        self.wait(0.4)
        self._change(lambda: self.text.insert(len(self.text), text))

    def paste(self, text: str) -> None:
        """A paste the browser reports."""
        offset = len(self.text)
        self.insert(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        self._event("signal.paste", {"length": len(text), "hash": digest,
                                     "file": "solution.py", "offset": offset})  # fmt: skip

    def away(self, seconds: float) -> None:
        self.wait(1)
        self._event("signal.visibility", {"state": "hidden"})
        self._event("signal.blur", {})
        self.wait(seconds)
        self._event("signal.focus", {})
        self._event("signal.visibility", {"state": "visible"})


def session(kind: str, seed_value: int = 1, start_us: int | None = None) -> Session:
    """One labelled session: ``human``, ``paste``, ``burst``, ``away_insert``, ``no_corrections``,
    ``late_start``, ``renamed_copy`` or ``other_solution``."""
    rng = random.Random(f"{kind}-{seed_value}")
    start = start_us if start_us is not None else 1_780_000_000_000_000 + seed_value * 10**10
    info = RoomInfo(f"syn{secrets.token_hex(5)}", RoomKind.SOLO, "python", start, None,
                    "synthetic", 5400)  # fmt: skip
    seed = initial_update(info, STARTER)
    result = Session(info, [LogEntry(info.id, 1, start, "system", EntryKind.SEED, seed)])
    result.events.append(TimelineEvent(info.id, start, CANDIDATE, "join",
                                       {"name": "Cal", "role": "candidate"}))  # fmt: skip
    result.events.append(TimelineEvent(info.id, start, "system", "round.live", {}))
    typist = Typist(result, seed, rng, start)
    typist.wait(rng.uniform(20, 60))  # reading the task
    head, tail = SOLUTION[:120], SOLUTION[120:]
    if kind == "human":
        typist.type(head)
        typist.away(12)  # a short look elsewhere: no flag
        typist.type(tail)
    elif kind == "paste":
        typist.type(head)
        result.marks["pasted_share"] = [typist.now_ms + 400]
        typist.paste(tail)
        result.labels = {"pasted_share"}
    elif kind == "burst":
        typist.type(head)
        result.marks["typing_burst"] = [typist.now_ms + 6]
        typist.burst(tail)
        result.labels = {"typing_burst"}
    elif kind == "away_insert":
        typist.type(head)
        left = typist.now_ms + 1000
        typist.away(90)
        back = typist.now_ms
        typist.insert(tail[:100])
        typist.insert(tail[100:])
        result.labels = {"away_then_insert", "unreported_insertion"}
        result.marks["away_then_insert"] = [left, back]
        result.marks["unreported_insertion"] = [back + 400, back + 800]
    elif kind == "no_corrections":
        typist.type(SOLUTION, typo_rate=0)
        result.labels = {"no_corrections"}
    elif kind == "late_start":
        typist.wait(20 * 60)
        result.marks["late_first_keystroke"] = [start // 1000]
        typist.type(SOLUTION)
        result.labels = {"late_first_keystroke"}
    elif kind == "renamed_copy":
        typist.type(RENAMED)
    elif kind == "other_solution":
        typist.type(OTHER_SOLUTION)
    else:
        raise ValueError(f"unknown session kind {kind!r}")
    return result


KINDS = ("human", "paste", "burst", "away_insert", "no_corrections", "late_start")
