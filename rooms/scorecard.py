"""Rubric scorecards: a reviewer scores a submission 1 to 4 on each criterion, with notes.

An automatic pre-fill proposes scores from what can be measured (hidden tests passed, the share
of the time limit used, integrity flags) and says so; the reviewer's own scorecard is what
counts. Scorecards are timeline events (``scorecard``) of the room they score.
"""

from __future__ import annotations

from typing import Any

from rooms.errors import BadRequest

CRITERIA = (
    ("correctness", "Correctness: does it do what was asked, edge cases included?"),
    ("design", "Design: is the code clear, well structured, easy to change?"),
    ("testing", "Testing: did they check their work?"),
    ("communication", "Communication: can they explain their choices?"),
)
MAX_NOTES = 5000


def parse_scorecard(data: Any) -> dict[str, Any]:
    """``{"scores": {criterion: 1-4}, "notes": text}``, every criterion scored."""
    names = [c for c, _ in CRITERIA]
    if not isinstance(data, dict) or set(data) != {"scores", "notes"}:
        raise BadRequest("a scorecard is {'scores': {criterion: 1 to 4}, 'notes': text}")
    scores, notes = data["scores"], data["notes"]
    if (
        not isinstance(scores, dict)
        or set(scores) != set(names)
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 4 for v in scores.values()
        )
    ):
        raise BadRequest(f"score each of {', '.join(names)} from 1 to 4")
    if not isinstance(notes, str) or len(notes) > MAX_NOTES:
        raise BadRequest(f"notes are text of at most {MAX_NOTES} characters")
    return {"scores": {n: scores[n] for n in names}, "notes": notes.strip()}


def prefill(
    tests: dict[str, Any] | None, used_share: float | None, integrity: int
) -> dict[str, Any]:
    """Proposed scores from objective signals only, with the reasons; only correctness and
    testing can be measured, the rest is left to the reviewer (None)."""
    reasons = []
    correctness = None
    if tests and tests.get("total"):
        share = tests["passed"] / tests["total"]
        correctness = 1 + round(3 * share)
        reasons.append(f"hidden tests: {tests['passed']} of {tests['total']} passed")
    if used_share is not None:
        reasons.append(f"used {used_share:.0%} of the time limit")
    if integrity:
        reasons.append(f"integrity score {integrity}/100: watch the flagged moments first")
    return {
        "automatic": True,
        "label": "Automatic pre-fill from objective signals: a proposal, not a judgement.",
        "scores": {"correctness": correctness, "design": None, "testing": None,
                   "communication": None},
        "reasons": reasons,
    }  # fmt: skip
