"""Assessments defined in files: multiple-choice tests, coding tasks, and hiring pipelines.

A company keeps these in its own repository and loads them (``clarityhire assessments load``
or ``POST /api/assessments``). Formats:

* a multiple-choice test, YAML (``kind: mcq``): ``id``, ``title``, ``time_limit_minutes``,
  ``shuffle``, and ``questions`` (``id``, ``prompt``, ``choices``, then ``answer`` (one index)
  or ``answers`` (several), optional ``weight``);
* a coding task, Markdown with YAML front matter (``kind: task``): ``id``, ``title``,
  ``language``, ``time_limit_minutes``, ``starter``, ``visible_tests`` and ``hidden_tests``
  (file name to text); the Markdown body is the prompt;
* a pipeline, YAML (``kind: pipeline``): ``id``, ``title`` and ``stages`` (``id``, ``type``:
  ``mcq``, ``task``, ``live``, ``design`` or ``behavioural``, ``assessment`` for mcq and task
  stages, ``advance``: ``{score: percent}`` or ``{percentile: p}`` (keep those above the p-th
  percentile), ``seed_from`` (an earlier task stage) for live stages, and ``prompt`` for live,
  design and behavioural stages: what the interviewer opens the room with).

A set of files is checked whole: every problem is reported with its file, line and field, and
nothing is loaded unless all of it is valid.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from rooms.errors import BadRequest

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)---[ \t]*\n?(.*)\Z", re.DOTALL)
STAGE_TYPES = ("mcq", "task", "live", "design", "behavioural")
INTERVIEW_STAGES = ("live", "design", "behavioural")  # rooms with an interviewer
MAX_STAGE_PROMPT = 5000
MAX_FILE_BYTES = 512 * 1024
MAX_TITLE = 200  # the store's column
MAX_SOURCE = 300  # file names, likewise


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class AssessmentError(BadRequest):
    """A set of assessment files with problems; none of them is loaded."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    prompt: str
    choices: tuple[str, ...]
    answers: tuple[int, ...]
    multiple: bool
    weight: float


@dataclass(frozen=True, slots=True)
class McqTest:
    id: str
    title: str
    time_limit_s: int
    shuffle: bool
    questions: tuple[Question, ...]

    def score(self, answers: dict[str, Any]) -> float:
        """Percent of the weighted points: a question counts only when exactly right."""
        total = sum(q.weight for q in self.questions)
        got = sum(
            q.weight
            for q in self.questions
            if isinstance(answers.get(q.id), list) and sorted(set(answers[q.id])) == list(q.answers)
        )
        return round(100 * got / total, 2) if total else 0.0


@dataclass(frozen=True, slots=True)
class CodingTask:
    id: str
    title: str
    language: str
    time_limit_s: int
    prompt: str
    starter: dict[str, str]
    visible_tests: dict[str, str]
    hidden_tests: dict[str, str]


@dataclass(frozen=True, slots=True)
class Stage:
    id: str
    type: str
    assessment: str | None
    advance_score: float | None
    advance_percentile: float | None
    seed_from: str | None
    prompt: str | None = None


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: str
    title: str
    stages: tuple[Stage, ...]


Assessment = McqTest | CodingTask | Pipeline


def load(files: dict[str, str]) -> list[tuple[str, Assessment]]:
    """Parse and check a set of files (name to text): (file name, assessment) of each; raises
    ``AssessmentError`` listing every problem found, in any of them."""
    reader = _Reader()
    parsed = [(name, reader.file(name, text)) for name, text in files.items()]
    loaded = [(name, a) for name, a in parsed if a is not None]
    reader.cross_check([a for _, a in loaded])
    if reader.problems:
        raise AssessmentError(reader.problems)
    return loaded


class _Reader:
    """Turns YAML into assessments, noting each problem with the line it is on."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._where: dict[str, tuple[str, dict[tuple[Any, ...], int]]] = {}  # id: file, lines

    def file(self, name: str, text: str) -> Assessment | None:
        if len(name) > MAX_SOURCE:
            self._problem(name[:60] + "…", 1, "(file)", f"a name over {MAX_SOURCE} characters")
            return None
        if len(text.encode()) > MAX_FILE_BYTES:
            self._problem(name, 1, "(file)", f"over {MAX_FILE_BYTES} bytes")
            return None
        body, offset, prompt = text, 0, ""
        if name.endswith(".md"):
            match = _FRONT_MATTER.match(text)
            if match is None:
                self._problem(name, 1, "(file)", "a task file starts with '---' front matter")
                return None
            body, prompt, offset = match.group(1), match.group(2).strip(), 1
        try:
            node = yaml.compose(body, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = (mark.line + 1 + offset) if mark is not None else 1
            self._problem(name, line, "(yaml)", str(getattr(e, "problem", e)))
            return None
        if not isinstance(node, yaml.MappingNode):
            self._problem(name, 1 + offset, "(file)", "must be a mapping of fields")
            return None
        lines: dict[tuple[Any, ...], int] = {}
        try:
            data = _Plain(lines, offset).convert(node, ())
        except ValueError as e:
            self._problem(name, 1 + offset, "(yaml)", str(e))
            return None
        doc = _Doc(self, name, data, lines)
        kind = doc.text(("kind",), choices=("mcq", "task", "pipeline"))
        if kind == "mcq":
            result: Assessment | None = self._mcq(doc)
        elif kind == "task":
            result = self._task(doc, prompt)
        elif kind == "pipeline":
            result = self._pipeline(doc)
        else:
            return None
        if result is not None:
            if result.id in self._where:
                other = self._where[result.id][0]
                doc.problem(("id",), f"{result.id!r} is also defined in {other}")
            self._where[result.id] = (name, lines)
        return result

    def cross_check(self, loaded: list[Assessment]) -> None:
        """What one file says of another: pipeline stages name loaded assessments of their
        type, live stages seed from an earlier task stage, stage ids are unique."""
        kinds = {a.id: type(a) for a in loaded}
        for pipeline in (a for a in loaded if isinstance(a, Pipeline)):
            name, lines = self._where[pipeline.id]
            doc = _Doc(self, name, {}, lines)
            seen: dict[str, str] = {}
            for i, stage in enumerate(pipeline.stages):
                path = ("stages", i)
                wanted = {"mcq": McqTest, "task": CodingTask}.get(stage.type)
                if wanted is not None and kinds.get(stage.assessment or "") is not wanted:
                    doc.problem(
                        (*path, "assessment"),
                        f"no {stage.type} assessment {stage.assessment!r} in the files loaded",
                    )
                if stage.seed_from is not None and seen.get(stage.seed_from) != "task":
                    doc.problem(
                        (*path, "seed_from"), f"{stage.seed_from!r} is not an earlier task stage"
                    )
                if stage.id in seen:
                    doc.problem((*path, "id"), f"stage {stage.id!r} appears twice")
                seen[stage.id] = stage.type

    def _problem(self, file: str, line: int, field: str, message: str) -> None:
        self.problems.append(Problem(file, line, field, message))

    # -- the three kinds ---------------------------------------------------------------------

    def _mcq(self, doc: _Doc) -> McqTest | None:
        doc.only({"kind", "id", "title", "time_limit_minutes", "shuffle", "questions"}, ())
        questions = []
        items = doc.items(("questions",))
        ids: set[str] = set()
        for i in range(len(items)):
            path = ("questions", i)
            doc.only({"id", "prompt", "choices", "answer", "answers", "weight"}, path)
            qid = doc.ident((*path, "id"))
            if qid in ids:
                doc.problem((*path, "id"), f"question {qid!r} appears twice")
            ids.add(qid)
            choices = tuple(
                doc.text((*path, "choices", j)) for j in range(len(doc.items((*path, "choices"))))
            )
            if len(choices) < 2:
                doc.problem((*path, "choices"), "at least two choices")
            single, several = doc.get((*path, "answer")), doc.get((*path, "answers"))
            if (single is None) == (several is None):
                doc.problem(path, "give exactly one of 'answer' (one index) or 'answers' (a list)")
                continue
            picked = [single] if several is None else (several if isinstance(several, list) else [])
            field_name = "answer" if several is None else "answers"
            if not picked or not all(
                isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(choices)
                for a in picked
            ):
                doc.problem(
                    (*path, field_name), f"indexes of choices, from 0 to {len(choices) - 1}"
                )
                continue
            questions.append(
                Question(qid, doc.text((*path, "prompt")), choices, tuple(sorted(set(picked))),
                         several is not None, doc.number((*path, "weight"), default=1.0))
            )  # fmt: skip
        if not items:
            doc.problem(("questions",), "at least one question")
        return McqTest(
            doc.ident(("id",)),
            doc.title(("title",)),
            doc.minutes(("time_limit_minutes",)),
            doc.flag(("shuffle",), default=False),
            tuple(questions),
        )

    def _task(self, doc: _Doc, prompt: str) -> CodingTask | None:
        allowed = {"kind", "id", "title", "language", "time_limit_minutes", "starter",
                   "visible_tests", "hidden_tests"}  # fmt: skip
        doc.only(allowed, ())
        if not prompt:
            doc.problem(("(prompt)",), "the Markdown after the front matter is the prompt")
        return CodingTask(
            doc.ident(("id",)),
            doc.title(("title",)),
            doc.text(("language",)),
            doc.minutes(("time_limit_minutes",)),
            prompt,
            doc.files(("starter",)),
            doc.files(("visible_tests",), required=False),
            doc.files(("hidden_tests",)),
        )

    def _pipeline(self, doc: _Doc) -> Pipeline | None:
        doc.only({"kind", "id", "title", "stages"}, ())
        stages = []
        items = doc.items(("stages",))
        if not items:
            doc.problem(("stages",), "at least one stage")
        for i in range(len(items)):
            path = ("stages", i)
            doc.only({"id", "type", "assessment", "advance", "seed_from", "prompt"}, path)
            kind = doc.text((*path, "type"), choices=STAGE_TYPES)
            advance = doc.get((*path, "advance"))
            score = percentile = None
            if advance is not None:
                if (
                    not isinstance(advance, dict)
                    or len(advance) != 1
                    or not (set(advance) <= {"score", "percentile"})
                ):
                    doc.problem((*path, "advance"), "{score: percent} or {percentile: p}")
                else:
                    key = next(iter(advance))
                    value = doc.number((*path, "advance", key))
                    if not 0 <= value <= 100:
                        doc.problem((*path, "advance", key), "from 0 to 100")
                    score, percentile = (value, None) if key == "score" else (None, value)
            needs_assessment = kind in ("mcq", "task")
            prompt = None
            if doc.get((*path, "prompt")) is not None:
                if kind not in INTERVIEW_STAGES:
                    doc.problem((*path, "prompt"), "only live, design and behavioural stages")
                prompt = doc.text((*path, "prompt"))
                if len(prompt) > MAX_STAGE_PROMPT:
                    doc.problem((*path, "prompt"), f"at most {MAX_STAGE_PROMPT} characters")
            stages.append(
                Stage(
                    doc.ident((*path, "id")),
                    kind,
                    doc.ident((*path, "assessment")) if needs_assessment else None,
                    score,
                    percentile,
                    doc.ident((*path, "seed_from")) if doc.get((*path, "seed_from")) else None,
                    prompt,
                )
            )
        return Pipeline(doc.ident(("id",)), doc.title(("title",)), tuple(stages))


class _Doc:
    """One parsed file: typed field access that notes problems instead of raising."""

    def __init__(
        self, reader: _Reader, name: str, data: Any, lines: dict[tuple[Any, ...], int]
    ) -> None:
        self.reader = reader
        self.name = name
        self.data = data
        self.lines = lines

    def problem(self, path: tuple[Any, ...], message: str) -> None:
        line = next((self.lines[path[:n]] for n in range(len(path), -1, -1)
                     if path[:n] in self.lines), 1)  # fmt: skip
        field = ".".join(str(p) for p in path) or "(file)"
        self.reader._problem(self.name, line, field, message)

    def get(self, path: tuple[Any, ...]) -> Any:
        value = self.data
        for key in path:
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and isinstance(key, int) and key < len(value):
                value = value[key]
            else:
                return None
        return value

    def only(self, allowed: set[str], path: tuple[Any, ...]) -> None:
        value = self.get(path)
        if not isinstance(value, dict):
            if path:
                self.problem(path, "must be a mapping of fields")
            return
        for key in value:
            if key not in allowed:
                self.problem((*path, key), f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def text(self, path: tuple[Any, ...], choices: tuple[str, ...] = ()) -> str:
        value = self.get(path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.problem(
                path, "required text" + (f": one of {', '.join(choices)}" if choices else "")
            )
            return ""
        if choices and value not in choices:
            self.problem(path, f"{value!r} is not one of {', '.join(choices)}")
            return ""
        return value

    def title(self, path: tuple[Any, ...]) -> str:
        value = self.text(path)
        if len(value) > MAX_TITLE:
            self.problem(path, f"at most {MAX_TITLE} characters")
        return value

    def ident(self, path: tuple[Any, ...]) -> str:
        value = self.text(path)
        if value and not _ID.match(value):
            self.problem(path, f"{value!r}: lower-case letters, digits, '-' and '_' only")
        return value

    def number(self, path: tuple[Any, ...], default: float | None = None) -> float:
        value = self.get(path)
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            self.problem(path, "a non-negative number")
            return 0.0
        return float(value)

    def minutes(self, path: tuple[Any, ...]) -> int:
        value = self.number(path)
        if not 1 <= value <= 24 * 60:
            self.problem(path, "from 1 to 1440 minutes")
        return int(value * 60)

    def flag(self, path: tuple[Any, ...], default: bool) -> bool:
        value = self.get(path)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, "true or false")
            return default
        return value

    def items(self, path: tuple[Any, ...]) -> list[Any]:
        value = self.get(path)
        if value is None:
            self.problem(path, "required list")
            return []
        if not isinstance(value, list):
            self.problem(path, "must be a list")
            return []
        return value

    def files(self, path: tuple[Any, ...], required: bool = True) -> dict[str, str]:
        value = self.get(path)
        if value is None and not required:
            return {}
        if not isinstance(value, dict) or (required and not value):
            self.problem(path, "file name to text (at least one file)")
            return {}
        result = {}
        for name, text in value.items():
            parts = str(name).split("/")
            if not isinstance(text, str) or ".." in parts or "" in parts:
                self.problem((*path, name), "a relative file name with text")
                continue
            result[str(name)] = text
        return result


class _Plain:
    """YAML nodes as plain Python, with the line of every path noted. Mapping keys must be
    plain scalars, and the expanded size is capped (aliases could make a small file huge)."""

    MAX_NODES = 20_000

    def __init__(self, lines: dict[tuple[Any, ...], int], offset: int) -> None:
        self.lines = lines
        self.offset = offset
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.nodes += 1
        if self.nodes > self.MAX_NODES:
            raise ValueError(f"more than {self.MAX_NODES} values (aliases expanded)")
        self.lines[path] = node.start_mark.line + 1 + self.offset
        if isinstance(node, yaml.MappingNode):
            result = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ValueError(f"line {key_node.start_mark.line + 1 + self.offset}: "
                                     "keys must be plain names")  # fmt: skip
                key = key_node.value
                result[key] = self.convert(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1 + self.offset
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


def stored_row(assessment: Assessment, source: str, loaded_us: int) -> dict[str, Any]:
    """The store's row for an assessment (``definition``: its fields as JSON)."""
    kind = {McqTest: "mcq", CodingTask: "task", Pipeline: "pipeline"}[type(assessment)]
    return {
        "id": assessment.id,
        "kind": kind,
        "title": assessment.title,
        "source": source,
        "definition": json.dumps(asdict(assessment)),
        "loaded_us": loaded_us,
    }


def source_files(paths: list[Path]) -> dict[str, str]:
    """The assessment files named, and those in the folders named (*.yaml, *.yml, *.md)."""
    files: dict[str, str] = {}
    for path in paths:
        found = sorted(
            p for p in (path.rglob("*") if path.is_dir() else [path])
            if p.suffix in (".yaml", ".yml", ".md") and p.is_file()
        )  # fmt: skip
        for file in found:
            files[str(file)] = file.read_text()
    return files


def from_stored(kind: str, definition: str) -> Assessment:
    """An assessment back from its stored row (``stored_row``)."""
    data = json.loads(definition)
    if kind == "mcq":
        questions = tuple(
            Question(q["id"], q["prompt"], tuple(q["choices"]), tuple(q["answers"]),
                     q["multiple"], q["weight"])
            for q in data["questions"]
        )  # fmt: skip
        return McqTest(data["id"], data["title"], data["time_limit_s"], data["shuffle"], questions)
    if kind == "task":
        return CodingTask(**data)
    return Pipeline(data["id"], data["title"], tuple(Stage(**s) for s in data["stages"]))
