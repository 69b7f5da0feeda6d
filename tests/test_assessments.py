"""Assessments loaded from files, through the API and the CLI: all of a set, or none of it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, ServerProcess

FIXTURES = ROOT / "tests" / "fixtures" / "assessments"


def fixture_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(FIXTURES.iterdir())}


def broken_files() -> dict[str, str]:
    files = fixture_files()
    files["backend.yaml"] = files["backend.yaml"].replace("assessment: top-k", "assessment: nope")
    files["python-basics.yaml"] = files["python-basics.yaml"].replace(
        "answers: [1, 2]", "answers: [1, 9]"
    )
    files["extra.yaml"] = "kind: mcq\nid: Bad Id\ntitle: [unclosed\n"
    files["odd-key.yaml"] = "kind: mcq\n? [a, b]\n: 1\n"
    # Aliases that expand to a billion values: refused, not expanded.
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    files["laughs.yaml"] = "kind: mcq\n" + laughs
    return files


def test_a_set_of_files_loads_and_lists_without_its_hidden_tests(server: ServerProcess) -> None:
    response = server.api("POST", "/api/assessments", {"files": fixture_files()})
    assert response.status_code == 201, response.text
    loaded = {a["id"]: a["kind"] for a in response.json()["loaded"]}
    assert loaded == {"backend-engineer": "pipeline", "python-basics": "mcq", "top-k": "task"}
    listed = server.api("GET", "/api/assessments")
    assert [(a["id"], a["source"]) for a in listed.json()] == [
        ("backend-engineer", "backend.yaml"),
        ("python-basics", "python-basics.yaml"),
        ("top-k", "top-k.md"),
    ]
    assert "hidden" not in listed.text
    assert server.api("GET", "/api/assessments", key=None).status_code == 401


def test_a_broken_set_is_refused_whole_with_file_line_and_field(server: ServerProcess) -> None:
    response = server.api("POST", "/api/assessments", {"files": broken_files()})
    assert response.status_code == 400
    problems = {(p["file"], p["line"], p["field"]) for p in response.json()["problems"]}
    assert ("python-basics.yaml", 14, "questions.1.answers") in problems
    assert ("extra.yaml", 4, "(yaml)") in problems or ("extra.yaml", 3, "(yaml)") in problems
    assert ("backend.yaml", 11, "stages.1.assessment") in problems
    messages = {p["file"]: p["message"] for p in response.json()["problems"]}
    assert "keys must be plain names" in messages["odd-key.yaml"]
    assert "aliases expanded" in messages["laughs.yaml"]
    assert server.api("GET", "/api/assessments").json() == []  # nothing was stored


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "assessments", "load", *args,
         "--data-dir", str(server.data_dir)],
        cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_cli_loads_a_folder_and_refuses_a_broken_one(
    server: ServerProcess, tmp_path: Path
) -> None:
    for name, text in broken_files().items():
        (tmp_path / name).write_text(text)
    refused = cli(server, str(tmp_path))
    assert refused.returncode == 1
    assert f"{tmp_path}/python-basics.yaml:14: questions.1.answers:" in refused.stderr
    assert "nothing loaded" in refused.stderr
    assert server.api("GET", "/api/assessments").json() == []

    loaded = cli(server, str(FIXTURES))
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded mcq      python-basics" in loaded.stdout
    assert len(server.api("GET", "/api/assessments").json()) == 3
