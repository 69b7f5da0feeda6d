"""The y-websocket wire protocol (y-protocols sync and awareness), strict on input.

Messages are ``varUint type`` followed by a payload:

* ``0`` sync: ``varUint subtype`` (0 step 1, 1 step 2, 2 update) then a ``varUint8Array``;
* ``1`` awareness: a ``varUint8Array`` holding ``varUint count`` then, per client,
  ``varUint client_id, varUint clock, varString state_json``;
* ``2`` auth (server to client): ``varUint 0`` (permission denied) then a ``varString`` reason;
* ``3`` query awareness: no payload.

Decoding never trusts a length: a truncated or over-long message raises ``ProtocolError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import orjson

from rooms.errors import ProtocolError


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness state; ``state`` is ``None`` when the client has gone."""

    client_id: int
    clock: int
    state_json: bytes

    @property
    def removed(self) -> bool:
        return self.state_json == b"null"


_MAX_SAFE = 2**53 - 1  # lib0 in browsers reads numbers as doubles


def _read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ProtocolError("truncated message: a number runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if value > _MAX_SAFE:
            raise ProtocolError("malformed message: a number over 2**53 (unsafe in browsers)")
        if byte < 0x80:
            return value, pos
        shift += 7


def _read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = _read_var_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise ProtocolError("truncated message: a byte array runs past the end")
    return data[pos:end], end


def write_var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def parse_message(data: bytes) -> tuple[int, int, bytes]:
    """Split a frame into ``(message type, sync type or -1, payload)``.

    The whole frame must be consumed: trailing bytes mean the sender and we disagree about
    the framing, which is treated as malformed rather than guessed at.
    """
    msg_type, pos = _read_var_uint(data, 0)
    if msg_type == MessageType.SYNC:
        sync_type, pos = _read_var_uint(data, pos)
        if sync_type > SyncType.UPDATE:
            raise ProtocolError(f"unknown sync message type {sync_type}")
        payload, pos = _read_bytes(data, pos)
    elif msg_type == MessageType.AWARENESS:
        sync_type = -1
        payload, pos = _read_bytes(data, pos)
    elif msg_type == MessageType.QUERY_AWARENESS:
        sync_type, payload = -1, b""
    elif msg_type == MessageType.AUTH:
        sync_type, pos = _read_var_uint(data, pos)  # 0: permission denied
        payload, pos = _read_bytes(data, pos)  # the reason, UTF-8
    else:
        raise ProtocolError(f"unknown message type {msg_type}")
    if pos != len(data):
        raise ProtocolError("malformed message: trailing bytes after the payload")
    return msg_type, sync_type, payload


def parse_awareness(payload: bytes) -> list[AwarenessEntry]:
    """Decode an awareness update; each state must be valid JSON (an object or null)."""
    count, pos = _read_var_uint(payload, 0)
    entries = []
    for _ in range(count):
        client_id, pos = _read_var_uint(payload, pos)
        clock, pos = _read_var_uint(payload, pos)
        state, pos = _read_bytes(payload, pos)
        try:
            value = orjson.loads(state)
        except orjson.JSONDecodeError as e:
            raise ProtocolError("malformed awareness state: not JSON") from e
        if value is not None and not isinstance(value, dict):
            raise ProtocolError("malformed awareness state: not an object or null")
        entries.append(AwarenessEntry(client_id, clock, state))
    if pos != len(payload):
        raise ProtocolError("malformed awareness update: trailing bytes")
    return entries


def encode_sync(sync_type: SyncType, payload: bytes) -> bytes:
    return b"\x00" + write_var_uint(sync_type) + write_var_uint(len(payload)) + payload


def encode_permission_denied(reason: str) -> bytes:
    """The y-protocols auth message a provider reports as "permission denied"."""
    text = reason.encode()
    return b"\x02\x00" + write_var_uint(len(text)) + text


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    body = bytearray(write_var_uint(len(entries)))
    for entry in entries:
        body += write_var_uint(entry.client_id)
        body += write_var_uint(entry.clock)
        body += write_var_uint(len(entry.state_json))
        body += entry.state_json
    return b"\x01" + write_var_uint(len(body)) + bytes(body)
