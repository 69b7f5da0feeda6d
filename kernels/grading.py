"""Hidden tests: run against a submission in a fresh kernel the candidate never sees.

The submitted files and the hidden test files are written to a new kernel's folder; each test
file is run, then each of its ``test_*`` functions, and every outcome is reported as one JSON
line after a marker on stdout. Nothing of it reaches the candidate's room.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from kernels.pool import KernelPool
from kernels.runs import RoomKernel, RunLimits, Runner

RESULT_MARKER = "@@clarityhire-test-results@@"

_HARNESS = """
def _clarityhire_grade(names, marker):
    import json, runpy, traceback
    results = []
    for name in names:
        try:
            scope = runpy.run_path(name, run_name="__test__")
        except BaseException as error:
            results.append({"name": name, "passed": False, "error": _clarityhire_error(error)})
            continue
        tests = [(k, v) for k, v in scope.items() if k.startswith("test_") and callable(v)]
        if not tests:
            results.append({"name": name, "passed": True, "error": ""})
        for test_name, test in tests:
            try:
                test()
                results.append({"name": f"{name}::{test_name}", "passed": True, "error": ""})
            except BaseException as error:
                results.append({"name": f"{name}::{test_name}", "passed": False,
                                "error": _clarityhire_error(error)})
    print(marker + json.dumps(results))


def _clarityhire_error(error):
    import traceback
    return "".join(traceback.format_exception_only(type(error), error)).strip()[:500]
"""


@dataclass
class CollectedRun:
    """An output sink that keeps a run's outputs in memory (nothing is written to a room)."""

    items: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    note: str = ""

    async def begin(self, record: dict[str, Any]) -> None:
        pass

    async def add(self, run_id: str, items: list[dict[str, Any]]) -> None:
        self.items.extend(items)

    async def finish(self, run_id: str, fields: dict[str, Any]) -> None:
        self.status = fields.get("status", self.status)
        self.note = fields.get("note", "") or ""

    @property
    def stdout(self) -> str:
        return "".join(i["text"] for i in self.items if i["type"] == "stream")


async def run_hidden_tests(
    pool: KernelPool,
    spec_name: str,
    limits: RunLimits,
    submission: dict[str, str],
    tests: dict[str, str],
) -> dict[str, Any]:
    """``{"status", "passed", "total", "tests": [{name, passed, error}], "note"}``."""
    sink = CollectedRun()

    async def no_input(runner: Runner, prompt: str, password: bool) -> str:
        raise RuntimeError("hidden tests cannot ask for input")

    kernel = RoomKernel(pool, spec_name, limits, sink, no_input)
    marker = f"{RESULT_MARKER}{secrets.token_hex(4)}:"
    code = f"{_HARNESS}\n_clarityhire_grade({json.dumps(sorted(tests))}, {json.dumps(marker)})\n"
    try:
        await kernel.run(
            Runner("system", "grader"), "(hidden tests)", code, {**submission, **tests}
        )
    finally:
        await kernel.close()
    results: list[dict[str, Any]] = []
    for line in sink.stdout.splitlines():
        if line.startswith(marker):
            results = json.loads(line[len(marker) :])
    passed = sum(1 for r in results if r["passed"])
    return {
        "status": sink.status if results else "error",
        "passed": passed,
        "total": len(results),
        "tests": results,
        "note": sink.note if results else (sink.note or "the tests reported nothing"),
    }
