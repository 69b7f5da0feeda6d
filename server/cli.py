"""The ``clarityhire`` command."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from pathlib import Path

import httpx
import uvicorn
from tqdm import tqdm

from rooms.assessments import AssessmentError, source_files
from rooms.funnel import parse_candidate_csv
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
    people = commands.add_parser("candidates", help="invite candidates, export results")
    people_actions = people.add_subparsers(dest="action", required=True)
    invite = people_actions.add_parser("invite", help="invite the candidates of a CSV file")
    invite.add_argument("pipeline", help="a loaded pipeline's id")
    invite.add_argument("csv", type=Path, help="a CSV file with 'name' and 'email' columns")
    invite.add_argument("--only-good", action="store_true", help="import the good rows anyway")
    invite.add_argument("--expires-in-hours", type=int, default=72)
    export = people_actions.add_parser("export", help="print a pipeline's candidates and scores")
    export.add_argument("pipeline", help="a loaded pipeline's id")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    for sub in (invite, export):
        sub.add_argument("--server", default="http://127.0.0.1:8000", help="the server's URL")
        sub.add_argument("--admin-key", default=os.environ.get("CLARITYHIRE_ADMIN_KEY", ""),
                         help="the admin key (default: $CLARITYHIRE_ADMIN_KEY)")  # fmt: skip
    args = parser.parse_args(argv)

    if args.command == "candidates":
        sys.exit(candidates_command(args))
    if args.command == "serve":
        settings = load_settings(
            args.config, host=args.host, port=args.port, data_dir=args.data_dir
        )
        run(settings, demo=args.demo)
    else:
        settings = load_settings(args.config, data_dir=args.data_dir)
        sys.exit(asyncio.run(load_assessments(settings, args.paths)))


INVITE_BATCH = 500  # rows per request (the API takes at most 1000)


def candidates_command(args: argparse.Namespace) -> int:
    """``clarityhire candidates invite|export``, through the server's admin API. Long work
    shows a progress bar on a terminal."""
    headers = {"authorization": f"Bearer {args.admin_key}"}
    base = f"{args.server.rstrip('/')}/api/pipelines/{args.pipeline}"
    with httpx.Client(headers=headers, timeout=120) as client:
        if args.action == "export":
            return _export(client, base, args.format)
        return _invite(client, base, args)


def _export(client: httpx.Client, base: str, fmt: str) -> int:
    with client.stream("GET", f"{base}/export", params={"format": fmt}) as response:
        if response.status_code != 200:
            response.read()
            return _failed(response)
        size = int(response.headers.get("content-length", 0)) or None
        with tqdm(total=size, unit="B", unit_scale=True, desc="exporting", disable=None) as bar:
            for chunk in response.iter_bytes():
                sys.stdout.buffer.write(chunk)
                bar.update(len(chunk))
    sys.stdout.flush()
    return 0


def _invite(client: httpx.Client, base: str, args: argparse.Namespace) -> int:
    """Every row is checked (here, then by the server against the pipeline's candidates)
    before the first is imported, so a bad file imports nothing."""
    rows, problems = parse_candidate_csv(args.csv.read_text())
    for problem in problems:
        print(f"{args.csv}:{problem}", file=sys.stderr)
    if problems and not args.only_good:
        print(f"nothing imported: {len(problems)} bad row(s); fix them, or pass --only-good",
              file=sys.stderr)  # fmt: skip
        return 1
    if not rows:
        print("no rows to import", file=sys.stderr)
        return 1
    batches = [rows[i : i + INVITE_BATCH] for i in range(0, len(rows), INVITE_BATCH)]
    invited: list[dict[str, str]] = []
    for stage, dry_run in (("checking", True), ("inviting", False)):
        with tqdm(total=len(rows), unit="candidate", desc=stage, disable=None) as bar:
            for batch in batches:
                body = {"candidates": batch, "expires_in_hours": args.expires_in_hours}
                params = {"dry_run": "1"} if dry_run else {}
                response = client.post(f"{base}/candidates", json=body, params=params)
                if response.status_code not in (200, 201):
                    bar.close()
                    if invited:
                        print(f"{len(invited)} candidate(s) were invited before this error",
                              file=sys.stderr)  # fmt: skip
                    return _failed(response)
                if not dry_run:
                    invited += response.json()["invited"]
                bar.update(len(batch))
    writer = csv.writer(sys.stdout)
    writer.writerow(["name", "email", "invite_url"])
    for person in invited:
        writer.writerow([person["name"], person["email"], person["invite_url"]])
    print(f"invited {len(invited)} candidate(s)", file=sys.stderr)
    return 0


def _failed(response: httpx.Response) -> int:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:200]
    print(f"error: {detail}", file=sys.stderr)
    return 1


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
