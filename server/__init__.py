"""Transport and wiring: the ASGI app, HTTP API, the document WebSocket, settings and CLI."""
