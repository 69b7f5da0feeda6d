"""The ``clarityhire`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

from rooms.assessments import AssessmentError, source_files
from server import logs
from server.app import create_app, open_store
from server.assessments import load_into
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
    assessments = commands.add_parser("assessments", help="manage assessments")
    actions = assessments.add_subparsers(dest="action", required=True)
    load = actions.add_parser("load", help="check assessment files and store them, all or none")
    load.add_argument("paths", nargs="+", type=Path, help="files, or folders of *.yaml/*.md")
    load.add_argument("--data-dir", help="folder for the database and secrets (data_dir)")
    load.add_argument("--config", type=Path, help="a TOML file of settings")
    args = parser.parse_args(argv)

    if args.command == "serve":
        settings = load_settings(
            args.config, host=args.host, port=args.port, data_dir=args.data_dir
        )
        run(settings, demo=args.demo)
    else:
        settings = load_settings(args.config, data_dir=args.data_dir)
        sys.exit(asyncio.run(load_assessments(settings, args.paths)))


async def load_assessments(settings: Settings, paths: list[Path]) -> int:
    """``clarityhire assessments load``: 0 when the set was stored, 1 with its problems."""
    files = source_files(paths)
    if not files:
        print("no assessment files (*.yaml, *.yml, *.md) found", file=sys.stderr)
        return 1
    store = open_store(settings)
    await store.start()
    try:
        loaded = await load_into(store, files)
    except AssessmentError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        print(f"nothing loaded: {len(e.problems)} problem(s)", file=sys.stderr)
        return 1
    finally:
        await store.close()
    for item in loaded:
        print(f"loaded {item['kind']:<8} {item['id']}  {item['title']}")
    return 0


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
