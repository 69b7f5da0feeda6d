"""The ``clarityhire`` command."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from server import logs
from server.app import create_app
from server.settings import Settings, load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="clarityhire", description="ClarityHire interview server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="interface to listen on (setting: host)")
    serve.add_argument("--port", type=int, help="port to listen on (setting: port)")
    serve.add_argument("--data-dir", help="folder for the database and secrets (data_dir)")
    serve.add_argument("--config", type=Path, help="a TOML file of settings")
    serve.add_argument("--demo", action="store_true", help="create a demo room, print its links")
    args = parser.parse_args(argv)

    settings = load_settings(args.config, host=args.host, port=args.port, data_dir=args.data_dir)
    run(settings, demo=args.demo)


def run(settings: Settings, demo: bool = False) -> None:
    logs.configure(settings.log_level)
    app = create_app(settings, demo=demo)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # websockets-sansio is the fastest of uvicorn's WebSocket implementations here.
        ws="websockets-sansio",
        # Frames up to 4x our own limit reach us and get a clear 4413; beyond that uvicorn
        # closes with the standard 1009.
        ws_max_size=settings.max_message_bytes * 4,
        log_config=None,  # keep the JSON-lines handlers set up by logs.configure
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
