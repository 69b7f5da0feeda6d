"""Each kind of bad input closes only the offending connection, with a specific code, and
changes nothing in the room; the other clients stay connected and keep syncing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from conftest import ServerProcess, eventually
from pycrdt import Doc, Map, Text
from yclient import YClient

from rooms.protocol import (
    AwarenessEntry,
    MessageType,
    SyncType,
    encode_awareness,
    encode_sync,
    parse_awareness,
    parse_message,
    write_var_uint,
)
from rooms.types import Role
from server.tokens import TokenSigner


def foreign_update() -> bytes:
    """A valid update from a replica that knows nothing of the room."""
    doc: Doc = Doc()
    files = doc.get("files", type=Map)
    files["main.py"] = Text("hijacked")
    return doc.get_update()


async def room_with_witness(server: ServerProcess) -> tuple[str, YClient]:
    room = server.create_room(files={"main.py": "print('hello')\n"})
    witness = await YClient(server.ws_url(room, server.token(room, "interviewer"))).connect()
    return room, witness


async def assert_room_intact(server: ServerProcess, room: str, witness: YClient) -> None:
    """The room still holds its text, and the witness still edits and syncs."""
    assert witness.text == "print('hello')\n"
    assert witness.connected
    late = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    assert late.text == "print('hello')\n"
    await witness.type("# still here\n")
    await eventually(lambda: late.text.endswith("# still here\n"))
    await late.close()


MESSAGES: dict[str, tuple[Callable[[], bytes | str], int, str]] = {
    "truncated varint": (lambda: b"\x00\x02\x85", 4400, "truncated"),
    "truncated payload": (lambda: b"\x00\x02\x10abc", 4400, "truncated"),
    "empty frame": (lambda: b"", 4400, "truncated"),
    "unknown message type": (lambda: b"\x07\x00", 4400, "unknown message type 7"),
    "unknown sync type": (lambda: b"\x00\x05\x00", 4400, "unknown sync message type 5"),
    "trailing bytes": (lambda: encode_sync(SyncType.UPDATE, b"\x00\x00") + b"xx", 4400, "trailing"),
    "malformed awareness": (lambda: b"\x01\x05\x01\x01\x01\x01{", 4400, "awareness"),
    "text frame": (lambda: "hello", 4415, "text frames"),
    "update pycrdt rejects": (
        lambda: encode_sync(SyncType.UPDATE, b"\x01\x02\x03garbage"),
        4422,
        "rejected by the CRDT",
    ),
    "malformed state vector": (lambda: encode_sync(SyncType.STEP1, b"\x05\x01"), 4400, "state"),
}


@pytest.mark.parametrize("case", list(MESSAGES))
async def test_malformed_messages_close_with_a_specific_code(
    server: ServerProcess, case: str
) -> None:
    make, code, reason = MESSAGES[case]
    room, witness = await room_with_witness(server)
    attacker = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    await attacker.send_raw(make())
    got_code, got_reason = await attacker.wait_closed()
    assert got_code == code
    assert reason in (got_reason or "")
    await assert_room_intact(server, room, witness)


async def test_oversized_update_is_refused(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(max_message_bytes="4096")
    room, witness = await room_with_witness(server)
    attacker = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    doc: Doc = Doc()
    doc.get("files", type=Map)["big.py"] = Text("x" * 8000)
    await attacker.send_raw(encode_sync(SyncType.UPDATE, doc.get_update()))
    code, reason = await attacker.wait_closed()
    assert code == 4413
    assert "exceeds the 4096 limit" in (reason or "")
    await assert_room_intact(server, room, witness)
    log = await server.history(room)
    assert all(b"big.py" not in e.update for e in log)


@pytest.mark.parametrize("role", ["observer", "reviewer"])
async def test_read_only_roles_cannot_change_the_document(server: ServerProcess, role: str) -> None:
    room, witness = await room_with_witness(server)
    reader = await YClient(server.ws_url(room, server.token(room, role))).connect()
    # The stock provider's step 2 that adds nothing is accepted silently...
    await reader.send_raw(encode_sync(SyncType.STEP2, reader.doc.get_update()))
    # ...but a real edit is refused, as an update or hidden in a step 2.
    await reader.type("evil()\n")
    code, reason = await reader.wait_closed()
    assert code == 4403
    assert f"role {role} is read-only" in (reason or "")
    sneaky = await YClient(server.ws_url(room, server.token(room, role))).connect()
    await sneaky.send_raw(encode_sync(SyncType.STEP2, foreign_update()))
    assert (await sneaky.wait_closed())[0] == 4403
    await assert_room_intact(server, room, witness)
    log = await server.history(room)
    assert all(b"evil" not in e.update and b"hijacked" not in e.update for e in log)


def _tampered(token: str) -> str:
    body, _, signature = token.partition(".")
    return body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature


TOKENS: dict[str, tuple[Callable[[ServerProcess, str, str], str | None], int, str]] = {
    "missing": (lambda s, room, other: None, 4401, "missing token"),
    "tampered": (lambda s, room, other: _tampered(s.token(room)), 4401, "invalid token"),
    "forged with another secret": (
        lambda s, room, other: TokenSigner("not-the-secret").mint(room, *_ROLE)[0],
        4401,
        "invalid token",
    ),
    "expired": (lambda s, room, other: _expired(s, room), 4401, "token expired"),
    "other room": (lambda s, room, other: s.token(other), 4403, "another room"),
}
_ROLE = (Role.INTERVIEWER, "Mallory", 3600)


def _expired(server: ServerProcess, room: str) -> str:
    token = server.token(room, ttl=1)
    time.sleep(1.1)
    return token


@pytest.mark.parametrize("case", list(TOKENS))
async def test_bad_tokens_are_refused(server: ServerProcess, case: str) -> None:
    make, code, reason = TOKENS[case]
    room, witness = await room_with_witness(server)
    other = server.create_room()
    client = YClient(server.ws_url(room, make(server, room, other)))
    await client.connect(wait_synced=False)
    got_code, got_reason = await client.wait_closed()
    assert (got_code, reason in (got_reason or "")) == (code, True)
    assert client.text == ""  # nothing of the room was sent before the refusal
    await assert_room_intact(server, room, witness)


async def test_unknown_room_is_refused(server: ServerProcess) -> None:
    room = server.create_room()
    token = server.token(room)
    client = YClient(server.ws_url("no-such-room", token))
    await client.connect(wait_synced=False)
    code, _ = await client.wait_closed()
    assert code == 4403  # the token names another room; it never reveals whether one exists


async def test_a_frame_with_only_a_length_prefix_is_refused(server: ServerProcess) -> None:
    room, witness = await room_with_witness(server)
    attacker = await YClient(server.ws_url(room, server.token(room))).connect()
    await attacker.send_raw(b"\x00\x02" + write_var_uint(2**40))
    assert (await attacker.wait_closed())[0] == 4400
    await assert_room_intact(server, room, witness)


async def test_an_update_with_missing_dependencies_is_refused(server: ServerProcess) -> None:
    """An update the CRDT would hold back (it builds on items the room does not have) could
    later land under someone else's name, or after the round ends: it is refused."""
    room, witness = await room_with_witness(server)
    plotter = Doc()
    plotter.apply_update(witness.doc.get_update())
    updates: list[bytes] = []
    plotter.observe(lambda event: updates.append(event.update))
    text = plotter.get("files", type=Map)["main.py"]
    assert isinstance(text, Text)
    text.insert(0, "a")  # never sent
    text.insert(1, "INJECTED")  # depends on the unsent "a"
    attacker = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    await attacker.send_raw(encode_sync(SyncType.UPDATE, updates[1]))
    code, reason = await attacker.wait_closed()
    assert (code, reason) == (4422, "update depends on changes this room does not have")
    await assert_room_intact(server, room, witness)
    log = await server.history(room)
    assert all(b"INJECTED" not in e.update for e in log)


async def test_meta_is_written_by_the_server_only(server: ServerProcess) -> None:
    room, witness = await room_with_witness(server)
    forger = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    forger.doc.get("meta", type=Map)["seeded_from"] = "someone-elses-room"
    await forger.flush()
    code, reason = await forger.wait_closed()
    assert code == 4403 and "written by the server only" in (reason or "")
    assert "seeded_from" not in witness.doc.get("meta", type=Map)
    await assert_room_intact(server, room, witness)


async def test_awareness_of_another_participant_cannot_be_taken(server: ServerProcess) -> None:
    # The y-websocket client sends back every awareness state it receives, so a state for
    # someone else's client id is dropped quietly: not relayed, not fatal, and the rest of the
    # frame still goes through.
    room, witness = await room_with_witness(server)
    await witness.send_awareness({"user": {"name": "Ivy"}})
    spoofer = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    await eventually(lambda: witness.doc.client_id in spoofer.awareness)
    spoofed = AwarenessEntry(witness.doc.client_id, 2, b'{"user":{"name":"not Ivy"}}')
    own = AwarenessEntry(spoofer.doc.client_id, 1, b'{"user":{"name":"Sam"}}')
    await spoofer.send_raw(encode_awareness([spoofed, own]))
    late = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    await eventually(lambda: spoofer.doc.client_id in late.awareness)
    assert b"Ivy" in late.awareness[witness.doc.client_id]
    assert spoofer.connected
    await late.close()
    await spoofer.close()


def own_removals(client: YClient) -> list[int]:
    """Clocks of the removals of the client's own awareness state that the server sent it."""
    clocks = []
    for frame in client.frames:
        msg_type, _, payload = parse_message(frame)
        if msg_type == MessageType.AWARENESS:
            mine = [e for e in parse_awareness(payload) if e.client_id == client.doc.client_id]
            clocks += [e.clock for e in mine if e.removed]
    return clocks


async def test_a_returning_participant_reclaims_its_cursor_and_echoes_stay_dead(
    server: ServerProcess,
) -> None:
    room, witness = await room_with_witness(server)
    leaver = await YClient(server.ws_url(room, server.token(room, "candidate"))).connect()
    await leaver.send_awareness({"user": {"name": "Lee"}}, clock=1)
    await eventually(lambda: leaver.doc.client_id in witness.awareness)
    await leaver.close()
    await eventually(lambda: leaver.doc.client_id not in witness.awareness)
    # The witness's client echoes the state it last saw: it must not bring Lee back.
    await witness.send_raw(encode_awareness([AwarenessEntry(leaver.doc.client_id, 1, b"{}")]))
    await witness.send_awareness({"user": {"name": "Ivy"}}, clock=5)
    observer = await YClient(server.ws_url(room, server.token(room, "observer"))).connect()
    await eventually(lambda: b"Ivy" in observer.awareness.get(witness.doc.client_id, b""))
    assert leaver.doc.client_id not in observer.awareness
    # Lee comes back with the clock it had: the server says it is behind (a removal at the
    # clock it knows), and the next announcement, with a newer clock, reaches everyone.
    await leaver.connect()
    await leaver.send_awareness({"user": {"name": "Lee"}}, clock=1)
    await eventually(lambda: own_removals(leaver) == [2])
    assert leaver.doc.client_id not in observer.awareness
    await leaver.send_awareness({"user": {"name": "Lee again"}}, clock=3)
    await eventually(lambda: b"Lee again" in observer.awareness.get(leaver.doc.client_id, b""))
    await leaver.close()
    await observer.close()
