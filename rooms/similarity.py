"""Similarity between submissions: winnowing fingerprints over normalised tokens (the MOSS
method, Schleimer, Wilkerson and Aiken, SIGMOD 2003).

Code is tokenised; comments and layout are dropped; identifiers become ``I``, numbers ``N`` and
strings ``S`` while keywords and operators stay, so renaming variables or reformatting does not
hide a copy. Every k-gram of tokens is hashed, and in each window of w consecutive hashes the
smallest is kept: any shared run of at least w + k - 1 tokens is guaranteed to share a
fingerprint. Fingerprints that also occur in the starter code are ignored.
"""

from __future__ import annotations

import keyword
import re
import zlib
from dataclasses import dataclass

K = 5  # tokens per k-gram
WINDOW = 4  # k-grams per winnowing window: copies of 8+ tokens are always found

_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
      | (?P<string>'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
      | (?P<number>\b\d[\d_.xXoObBeE]*\b)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op>==|!=|<=|>=|->|\*\*|//|\+=|-=|\*=|/=|[-+*/%<>=!&|^~:;,.()\[\]{}@])
      | (?P<space>\s+)""",
    re.VERBOSE | re.DOTALL,
)
# Kept as they are: they carry the structure, and renaming them is not possible.
_KEPT = frozenset(keyword.kwlist) | {
    "print", "len", "range", "self", "return", "function", "const", "let", "var", "int",
    "str", "list", "dict", "set", "enumerate", "zip", "sorted", "sum", "min", "max",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fingerprint:
    hash: int
    start: int  # character offsets of the k-gram in its file
    end: int


@dataclass(frozen=True, slots=True)
class Region:
    """A stretch of one file that matches a stretch of the other submission."""

    file: str
    start: int
    end: int
    other_file: str
    other_start: int
    other_end: int


def tokens(code: str) -> list[tuple[str, int, int]]:
    """(normalised token, start, end) of ``code``; comments and whitespace left out."""
    result = []
    for match in _TOKEN.finditer(code):
        kind = match.lastgroup
        text = match.group()
        if kind in ("comment", "space"):
            continue
        if kind == "string":
            text = "S"
        elif kind == "number":
            text = "N"
        elif kind == "name" and text not in _KEPT:
            text = "I"
        result.append((text, match.start(), match.end()))
    return result


def fingerprints(code: str) -> list[Fingerprint]:
    toks = tokens(code)
    grams = [
        Fingerprint(
            zlib.crc32(" ".join(t[0] for t in toks[i : i + K]).encode()),
            toks[i][1],
            toks[i + K - 1][2],
        )
        for i in range(len(toks) - K + 1)
    ]
    if len(grams) <= WINDOW:
        return grams
    chosen: dict[int, Fingerprint] = {}  # by k-gram index: each kept once
    for i in range(len(grams) - WINDOW + 1):
        window = grams[i : i + WINDOW]
        # The rightmost smallest, as in the paper, so that runs of equal hashes keep few.
        best = min(range(WINDOW), key=lambda j: (window[j].hash, -j))
        chosen[i + best] = window[best]
    return [chosen[i] for i in sorted(chosen)]


@dataclass(frozen=True, slots=True)
class Match:
    """How much of one submission is found in another."""

    share: float  # of this submission's own fingerprints (starter code excluded)
    regions: list[Region]


def compare(mine: dict[str, str], other: dict[str, str], starter: dict[str, str]) -> Match:
    """Which parts of ``mine`` (files) also occur in ``other``, ignoring ``starter`` code."""
    given = {f.hash for code in starter.values() for f in fingerprints(code)}
    theirs: dict[int, tuple[str, Fingerprint]] = {}
    for name, code in other.items():
        for f in fingerprints(code):
            theirs.setdefault(f.hash, (name, f))
    own = 0
    spans: list[Region] = []
    for name, code in mine.items():
        for f in fingerprints(code):
            if f.hash in given:
                continue
            own += 1
            found = theirs.get(f.hash)
            if found is not None:
                other_name, g = found
                spans.append(Region(name, f.start, f.end, other_name, g.start, g.end))
    matched = len(spans)
    return Match(round(matched / own, 3) if own else 0.0, _merge(spans))


def _merge(spans: list[Region]) -> list[Region]:
    """Overlapping or touching matched spans of the same files, joined."""
    merged: list[Region] = []
    for span in sorted(spans, key=lambda r: (r.file, r.other_file, r.start)):
        last = merged[-1] if merged else None
        if (
            last
            and last.file == span.file
            and last.other_file == span.other_file
            and (span.start <= last.end + 1)
        ):
            merged[-1] = Region(
                last.file,
                last.start,
                max(last.end, span.end),
                last.other_file,
                min(last.other_start, span.other_start),
                max(last.other_end, span.other_end),
            )
        else:
            merged.append(span)
    return merged
