"""Schemas of what clients may say on the control plane: chat and integrity signals.

A signal is what a browser reports about itself (a paste, leaving the tab). It is a claim, not
a fact: it is stored with server time and later cross-checked against the document log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rooms.errors import BadRequest

_HEX = re.compile(r"^[0-9a-f]{8,128}$")
_MAX_COUNT = 50_000_000  # longer than any paste or file we accept


@dataclass(frozen=True, slots=True)
class Field:
    kind: type
    required: bool = True
    choices: tuple[str, ...] = ()
    max_len: int = 200


SIGNALS: dict[str, dict[str, Field]] = {
    "paste": {
        "length": Field(int),
        "hash": Field(str, max_len=128),
        "file": Field(str),
        "offset": Field(int),
    },
    "copy": {"length": Field(int), "file": Field(str, required=False)},
    "focus": {},
    "blur": {},
    "visibility": {"state": Field(str, choices=("hidden", "visible"))},
    "fullscreen_exit": {},
}


def parse_signal(data: Any) -> tuple[str, dict[str, Any]]:
    """``(signal type, its fields)`` of a valid signal; raises ``BadRequest`` with the reason.

    Every signal may carry ``client_at``, the browser's clock in ms, kept beside server time.
    """
    if not isinstance(data, dict):
        raise BadRequest("a signal is an object with a 'type'")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in SIGNALS:
        raise BadRequest(f"unknown signal type {kind!r}; known: {', '.join(SIGNALS)}")
    schema = SIGNALS[kind]
    unknown = set(data) - set(schema) - {"type", "client_at"}
    if unknown:
        raise BadRequest(f"signal {kind}: unknown fields {sorted(unknown)}")
    fields: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in data:
            if spec.required:
                raise BadRequest(f"signal {kind}: '{name}' is required")
            continue
        fields[name] = _check(kind, name, data[name], spec)
    if "client_at" in data:
        fields["client_at"] = _check(kind, "client_at", data["client_at"], Field(int))
    return kind, fields


def _check(kind: str, name: str, value: Any, spec: Field) -> Any:
    if isinstance(value, bool) or not isinstance(value, spec.kind):
        raise BadRequest(f"signal {kind}: '{name}' must be {spec.kind.__name__}")
    if isinstance(value, int) and not 0 <= value <= (2**53 if name == "client_at" else _MAX_COUNT):
        raise BadRequest(f"signal {kind}: '{name}' is out of range")
    if isinstance(value, str):
        if len(value) > spec.max_len:
            raise BadRequest(f"signal {kind}: '{name}' is longer than {spec.max_len}")
        if spec.choices and value not in spec.choices:
            raise BadRequest(f"signal {kind}: '{name}' must be one of {', '.join(spec.choices)}")
        if name == "hash" and not _HEX.match(value):
            raise BadRequest(f"signal {kind}: 'hash' must be lower-case hex")
    return value


def parse_chat(data: Any, max_chars: int) -> str:
    """The text of a valid chat message; raises ``BadRequest``."""
    if not isinstance(data, dict) or set(data) != {"text"} or not isinstance(data["text"], str):
        raise BadRequest("a chat message is {'text': '...'}")
    text = data["text"].strip()
    if not text:
        raise BadRequest("a chat message cannot be empty")
    if len(text) > max_chars:
        raise BadRequest(f"a chat message is at most {max_chars} characters")
    return text
