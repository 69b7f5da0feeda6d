"""Errors a room raises, each carrying the code it is reported with on the wire.

WebSocket close codes in the 4000-4999 range are application-defined; we mirror HTTP status
numbers so that a code reads the same in a browser console and in a log line.
"""

from __future__ import annotations


class RoomError(Exception):
    """Base class: ``close_code`` for WebSocket connections, ``status`` for HTTP."""

    close_code = 4500
    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        # The WebSocket close reason is limited to 123 bytes of UTF-8.
        self.reason = reason.encode()[:123].decode(errors="ignore")


class ProtocolError(RoomError):
    """A malformed, truncated or unknown y-websocket message."""

    close_code = 4400
    status = 400


class Unauthorized(RoomError):
    """A missing, tampered or expired token."""

    close_code = 4401
    status = 401


class Forbidden(RoomError):
    """A valid token that does not allow this: another room, or a write from a read-only role."""

    close_code = 4403
    status = 403


class RoomNotFound(RoomError):
    close_code = 4404
    status = 404


class MessageTooLarge(RoomError):
    close_code = 4413
    status = 413


class UnsupportedData(RoomError):
    """A text frame where the protocol only carries binary frames."""

    close_code = 4415
    status = 415


class InvalidUpdate(RoomError):
    """An update the CRDT refuses to decode or integrate."""

    close_code = 4422
    status = 422


class BadRequest(RoomError):
    """An HTTP request whose body or parameters are wrong."""

    close_code = 4400
    status = 400


class Conflict(RoomError):
    """An action that the room's current state does not allow (ending an ended round)."""

    close_code = 4409
    status = 409


class DocumentFrozen(RoomError):
    """A candidate's edit after the round ended. Not a reason to close the connection: the
    update is dropped and the client told, so a provider does not reconnect in a loop."""

    close_code = 4423
    status = 423


class RateLimited(RoomError):
    close_code = 4429
    status = 429


class ClusterUnavailable(RoomError):
    """Cluster mode without Redis: a node cannot tell the others about a newcomer's edits
    in time, so new joins are refused until it is back (connected clients keep editing)."""

    close_code = 4503
    status = 503
