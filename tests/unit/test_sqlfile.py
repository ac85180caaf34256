"""The store's SQL files: every block loads, shared fragments reach every file, and each
rule that several statements apply is written once."""

from __future__ import annotations

from importlib import resources

import pytest

from pyagent.store.sqlfile import SHARED_FILE, load_blocks, parse_blocks

STORE = resources.files("pyagent.store")
SQL_FILES = sorted(p.name for p in STORE.iterdir() if p.name.endswith(".sql"))


@pytest.mark.parametrize("name", [n for n in SQL_FILES if n != SHARED_FILE])
def test_every_block_of_every_file_loads(name):
    blocks = load_blocks("pyagent.store", name)
    assert blocks
    assert not [n for n, text in blocks.items() if "{{" in text]


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("a log row of the job's current claim", "l.jlgstart >= j.joblastrun"),
        ("the failure streak", "NOT IN ('f', 'r')"),
        ("an agent's liveness facts", "pg_stat_activity s ON s.pid = a.jagpid"),
        ("the session clock", "now() AS now"),
        ("a job's own time zone for one transaction", "set_config('TimeZone'"),
        ("the release of a claimed job", "SET jobagentid = NULL, jobnextrun ="),
        ("the close of a run's log", "SET jlgstatus = %(status)s"),
    ],
)
def test_each_shared_rule_is_written_once(rule, text):
    where = {n: STORE.joinpath(n).read_text(encoding="utf-8").count(text) for n in SQL_FILES}
    assert sum(where.values()) == 1, f"{rule}: {where}"


def test_shared_fragments_are_included_and_may_not_be_shadowed():
    shared = {"owned": "jobagentid = %(pid)s"}
    blocks = parse_blocks("-- name: mine\nSELECT 1 FROM t WHERE {{owned}}", shared)
    assert blocks == {"mine": "SELECT 1 FROM t WHERE jobagentid = %(pid)s"}
    with pytest.raises(ValueError, match="duplicate"):
        parse_blocks("-- fragment: owned\nfalse\n-- name: x\nSELECT {{owned}}", shared)
    with pytest.raises(ValueError, match="unknown fragment"):
        parse_blocks("-- name: x\nSELECT {{nowhere}}", shared)
