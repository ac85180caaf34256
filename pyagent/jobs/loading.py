"""Job files read: files and directories to YAML documents with their lines, then to
FileJobs (checked by pyagent.jobs.validation), every problem of every file at once.

The YAML is read with a deliberately small set of implicit types (YAML 1.2's core schema:
null, true/false, decimal integers, floats with a dot), so `02:30`, `2025-12-25`, `yes`
or `0755` stay text instead of becoming sexagesimal numbers, dates or booleans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import yaml

from pyagent.jobs.model import FileJob
from pyagent.jobs.validation import JobFileError, Loc, Problem, check_job, check_set


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core implicit types only."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    ("float", r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$", "-+0123456789."),
):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_regexp), list(_first))


class _YamlProblem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _convert(node: yaml.Node) -> Loc:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        tag = node.tag.rsplit(":", 1)[-1]
        text = node.value
        if tag == "null":
            return Loc(None, line)
        if tag == "bool":
            return Loc(text.lower() == "true", line)
        if tag == "int":
            return Loc(int(text), line)
        if tag == "float":
            return Loc(float(text), line)
        if tag == "str":
            return Loc(text, line)
        raise _YamlProblem(line, f"unsupported YAML tag {node.tag}")
    if isinstance(node, yaml.SequenceNode):
        return Loc([_convert(item) for item in node.value], line)
    if isinstance(node, yaml.MappingNode):
        mapping: dict[str, Loc] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                raise _YamlProblem(key_line, "keys must be plain field names (no merge keys)")
            key = str(key_node.value)
            if key in mapping:
                raise _YamlProblem(key_line, f"field {key!r} is given twice")
            # A field's problems point at the line of its name.
            mapping[key] = Loc(_convert(value_node).value, key_line)
        return Loc(mapping, line)
    raise _YamlProblem(line, "unsupported YAML node")


def load_documents(text: str, file: str) -> list[Loc]:
    """The non-empty YAML documents of a file, with line numbers."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(exc.problem or exc).split())
        raise JobFileError([Problem(file, line, None, f"not valid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise JobFileError([Problem(file, None, None, f"not valid YAML: {exc}")]) from None
    docs = []
    for node in nodes:
        if node is None:
            continue
        try:
            docs.append(_convert(node))
        except _YamlProblem as exc:
            raise JobFileError([Problem(file, exc.line, None, str(exc))]) from None
    return docs


def job_files(paths: Iterable[str]) -> list[Path]:
    """The files named, and the *.yaml / *.yml files under the directories named."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            )
        elif path.exists():
            found.append(path)
        else:
            raise JobFileError([Problem(text, None, None, "no such file or directory")])
    return found


def parse_text(text: str, file: str) -> list[FileJob]:
    """The jobs of one file's text; JobFileError lists every problem found."""
    problems: list[Problem] = []
    jobs = []
    for doc in load_documents(text, file):
        job = check_job(doc, file, problems)
        if job is not None:
            jobs.append(job)
    if problems:
        raise JobFileError(problems)
    return jobs


def load(paths: Iterable[str]) -> list[FileJob]:
    """Every job of these files and directories, checked one by one and as a set (each
    name once, no date-and-time exception twice); JobFileError lists every problem."""
    problems: list[Problem] = []
    jobs: list[FileJob] = []
    for path in job_files(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), None, None, f"cannot read: {exc}"))
            continue
        try:
            jobs.extend(parse_text(text, str(path)))
        except JobFileError as exc:
            problems.extend(exc.problems)
    problems += check_set(jobs)
    if problems:
        raise JobFileError(problems)
    return jobs
