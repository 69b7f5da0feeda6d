#!/usr/bin/env python3
"""Integrity signals measured: precision and recall per signal on labelled synthetic sessions,
and the time to score a 90-minute session.

Sessions come from ``tests/sessions.py`` (steady human typing with corrections, a reported
paste of the solution, a tool typing a burst, leaving the tab and coming back with code, typing
straight through with no corrections, a late start), ``--per-kind`` of each with different
random seeds (typing rhythm, typos, reading time). Each is scored the way the server does
(``rooms.integrity.assess`` over the replayed log); a signal's positives are the sessions
labelled with it. Similarity is measured on pairs: a copy with renamed identifiers against the
original (positive), an unrelated solution to the same task against it (negative).

The 90-minute session is ``bench/replay.py``'s generated 50,000-update session; its time is the
whole report: replaying the log with attribution, the signals, and one similarity comparison.

Prints a table and writes ``bench/results/integrity.json``:
``.venv/bin/python bench/integrity.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from replay import generate  # noqa: E402
from sessions import CANDIDATE, KINDS, session  # noqa: E402

from rooms.document import files_of, load_doc  # noqa: E402
from rooms.integrity import WEIGHTS, assess, session_of  # noqa: E402
from rooms.similarity import compare  # noqa: E402
from rooms.timeline import replay_with_attribution  # noqa: E402
from rooms.types import TimelineEvent  # noqa: E402

SIMILAR = 0.35  # the report's threshold (rooms/integrity.py SIMILARITY_MIN_SHARE)


def fired(entries: list, events: list[TimelineEvent], candidates: frozenset[str]) -> set[str]:
    pastes = [e for e in events if e.type == "signal.paste"]
    attribution = replay_with_attribution(entries, pastes)
    return {f.signal for f in assess(session_of(attribution, events, candidates))}


def final_files(entries: list) -> dict[str, str]:
    return files_of(load_doc([e.update for e in entries]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "integrity.json")
    args = parser.parse_args()
    candidates = frozenset({CANDIDATE})
    outcomes: list[tuple[set[str], set[str]]] = []  # (labels, fired)
    for kind in KINDS:
        for seed in range(args.per_kind):
            built = session(kind, seed_value=seed)
            outcomes.append((built.labels, fired(built.entries, built.events, candidates)))
    per_signal = {}
    for signal in WEIGHTS:
        tp = sum(1 for labels, got in outcomes if signal in labels and signal in got)
        fp = sum(1 for labels, got in outcomes if signal not in labels and signal in got)
        fn = sum(1 for labels, got in outcomes if signal in labels and signal not in got)
        per_signal[signal] = {
            "precision": round(tp / (tp + fp), 3) if tp + fp else None,
            "recall": round(tp / (tp + fn), 3) if tp + fn else None,
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
        }
    human_quiet = sum(1 for labels, got in outcomes if not labels and not got)
    humans = sum(1 for labels, _ in outcomes if not labels)

    starter = final_files(session("human").entries[:1])
    tp = fp = fn = 0
    shares = {"copy": [], "unrelated": []}
    for seed in range(args.per_kind):
        original = final_files(session("human", seed_value=seed).entries)
        copy = final_files(session("renamed_copy", seed_value=seed).entries)
        other = final_files(session("other_solution", seed_value=seed).entries)
        copy_share = compare(copy, original, starter).share
        other_share = compare(other, original, starter).share
        shares["copy"].append(copy_share)
        shares["unrelated"].append(other_share)
        tp += copy_share >= SIMILAR
        fn += copy_share < SIMILAR
        fp += other_share >= SIMILAR
    per_signal["similarity"] = {
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "median_share_copy": statistics.median(shares["copy"]),
        "median_share_unrelated": statistics.median(shares["unrelated"]),
    }

    _info, entries, _snapshots = generate("long", 50_000, 1_780_000_000_000_000)
    long_candidates = frozenset({"p_candidate"})
    start = time.perf_counter()
    fired(entries, [], long_candidates)
    compare(final_files(entries), final_files(entries[:25_000]), starter)
    score_s = time.perf_counter() - start

    result = {
        "signals": per_signal,
        "human_sessions_quiet": f"{human_quiet}/{humans}",
        "sessions": len(outcomes),
        "score_90_min_session_s": round(score_s, 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"{'signal':<22} {'precision':>9} {'recall':>7}")
    for signal, row in per_signal.items():
        print(f"{signal:<22} {row['precision']!s:>9} {row['recall']!s:>7}")
    print(f"human sessions with no flag: {result['human_sessions_quiet']}")
    print(f"scoring a 90-minute, 50,000-update session: {score_s:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
