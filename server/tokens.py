"""Participant tokens: signed, expiring, bound to one room, one role and one participant.

Format: ``base64url(json payload) "." base64url(HMAC-SHA256(secret, payload))``. The payload
holds ``room``, ``role``, ``pid`` (participant id), ``name`` and ``exp`` (Unix seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson

from rooms.errors import Forbidden, Unauthorized
from rooms.types import Participant, Role


@dataclass(frozen=True, slots=True)
class TokenClaims:
    room_id: str
    participant: Participant
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"clarityhire-token:" + secret.encode()).digest()

    def mint(
        self, room_id: str, role: Role, name: str, ttl_seconds: int
    ) -> tuple[str, TokenClaims]:
        participant = Participant(id="p_" + secrets.token_hex(6), name=name, role=role)
        expires_at = int(time.time()) + ttl_seconds
        payload = orjson.dumps(
            {
                "room": room_id,
                "role": role.value,
                "pid": participant.id,
                "name": name,
                "exp": expires_at,
            }
        )
        body = _b64(payload)
        return f"{body}.{self._sign(body)}", TokenClaims(room_id, participant, expires_at)

    def verify(self, token: str | None, room_id: str) -> TokenClaims:
        """The claims of a valid token for ``room_id``; raises ``Unauthorized``/``Forbidden``."""
        claims = self.verify_any(token)
        if claims.room_id != room_id:
            raise Forbidden("token is for another room")
        return claims

    def verify_any(self, token: str | None) -> TokenClaims:
        """The claims of a valid, unexpired token, whatever its room; raises ``Unauthorized``."""
        if not token:
            raise Unauthorized("missing token: open the link you were given, with its ?token=")
        body, _, signature = token.partition(".")
        if not signature or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise Unauthorized("invalid token: the link is damaged or was not issued here")
        try:
            claims = orjson.loads(_unb64(body))
            participant = Participant(
                id=str(claims["pid"]), name=str(claims["name"]), role=Role(claims["role"])
            )
            expires_at = int(claims["exp"])
            token_room = str(claims["room"])
        except (ValueError, KeyError, TypeError) as e:
            raise Unauthorized("invalid token: unreadable claims") from e
        if expires_at <= time.time():
            raise Unauthorized("token expired: ask the organiser for a new link")
        return TokenClaims(token_room, participant, expires_at)

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
