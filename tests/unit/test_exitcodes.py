"""Exit statuses are defined once (pyagent.exitcodes), and the docs list them as defined."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyagent import exitcodes as x

ROOT = Path(__file__).resolve().parents[2]

# What each documented row must say about the status it gives.
JOBS_STATUSES = {
    x.EXIT_OK: "ok|done",
    x.EXIT_FAILED: "error",
    x.EXIT_USAGE: "bad usage",
    x.EXIT_CHANGES: "apply --dry-run",
    x.EXIT_TIMEOUT: "--timeout",
    x.EXIT_NO_AGENT: "no live agent",
    x.EXIT_NOT_RUNNING: "not running",
    x.EXIT_LOCK_TIMEOUT: "lock-timeout",
    x.EXIT_CONFLICT: "edited meanwhile|changed by someone else",
}
SCHEMA_STATUSES = {
    x.CHECK_OK: "usable",
    x.CHECK_PROBLEMS: "problems found",
    x.EXIT_USAGE: "bad arguments",
    x.CHECK_CANNOT_CONNECT: "could not connect",
}


def _table_after(path: Path, heading: str) -> dict[int, str]:
    """{status: meaning} of the first `| status | meaning |` table after `heading`."""
    text = path.read_text(encoding="utf-8")
    rest = text[text.index(heading) :]
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", rest.split("\n\n", 2)[1], re.MULTILINE)
    return {int(status): meaning for status, meaning in rows}


@pytest.mark.parametrize(
    ("path", "heading", "statuses"),
    [
        ("README.md", "Exit statuses of `pyagent jobs`:", JOBS_STATUSES),
        ("docs/jobs.md", "Exit statuses:\n", JOBS_STATUSES),
        ("docs/schema.md", "Exit status:\n", SCHEMA_STATUSES),
    ],
)
def test_the_docs_list_the_statuses_as_defined(path, heading, statuses):
    table = _table_after(ROOT / path, heading)
    assert sorted(table) == sorted(statuses)
    for status, words in statuses.items():
        assert re.search(words, table[status]), (status, table[status])


def test_the_statuses_of_pyagent_jobs_are_distinct():
    jobs = [v for k, v in vars(x).items() if k.startswith("EXIT_")]
    assert len(jobs) == len(set(jobs))
