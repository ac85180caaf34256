"""Pure job-control logic: annotations, the retry rule, backoff, alert documents, and the
alert dispatcher's queueing (no database, no network)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import pytest

from pyagent.annotations import read_job
from pyagent.control.alerts import (
    AlertDispatcher,
    DeliveryError,
    RetryNote,
    alert_event,
    build_alert,
    parse_webhook,
    safe_url,
    webhook_secrets,
)
from pyagent.control.options import (
    MAX_RETRY_DELAY,
    JobControlOptions,
    backoff_delay,
    decide_retry,
    job_control_options,
)
from pyagent.settings import ControlSettings
from pyagent.store.jobcontrol import RunReport

DEFAULTS = ControlSettings()


def test_annotations_are_read_from_the_comment():
    options = job_control_options(
        read_job("Nightly load\n@RETRIES=3;\n@RETRY_DELAY=30 s;\n@ALERT=always;\n"), DEFAULTS
    )
    assert options == JobControlOptions(3, 30.0, "always", ())


def test_without_annotations_the_defaults_apply():
    assert job_control_options(read_job("just a comment"), DEFAULTS) == JobControlOptions(0, 60.0)
    agent_wide = ControlSettings(retries=2, retry_delay=5.0)
    assert job_control_options(read_job(""), agent_wide) == JobControlOptions(2, 5.0)
    # The annotation wins over the agent-wide default, 0 included.
    assert job_control_options(read_job("@RETRIES=0;"), agent_wide).retries == 0


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("@RETRIES=three;", "@RETRIES"),
        ("@RETRIES=-1;", "@RETRIES"),
        ("@RETRIES=1000;", "@RETRIES"),
        ("@RETRY_DELAY=soon;", "@RETRY_DELAY"),
        ("@RETRY_DELAY=-1 s;", "@RETRY_DELAY"),
        ("@ALERT=sometimes;", "@ALERT"),
    ],
)
def test_bad_values_keep_the_default_and_are_reported(line, name):
    options = job_control_options(read_job(f"@RETRIES=2;\n{line}"), DEFAULTS)
    assert len(options.problems) == 1
    assert options.problems[0].startswith(name)
    value = line.split("=", 1)[1].rstrip(";")
    assert repr(value) in options.problems[0]
    if name == "@RETRY_DELAY":
        assert options.retry_delay == 60.0 and options.retries == 2
    if name == "@ALERT":
        assert options.alert == "failure"


def test_a_zero_delay_means_retry_at_once():
    # `pyagent jobs apply` accepts retry_delay: 0 and writes it as @RETRY_DELAY=0 s;.
    options = job_control_options(read_job("@RETRIES=2;\n@RETRY_DELAY=0 s;"), DEFAULTS)
    assert options.problems == () and options.retry_delay == 0
    assert decide_retry(2, options).delay == 0 and decide_retry(2, options).retrying


def test_backoff_doubles_up_to_the_cap():
    assert [backoff_delay(k, 60) for k in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert backoff_delay(7, 60) == MAX_RETRY_DELAY
    assert backoff_delay(100, 60) == MAX_RETRY_DELAY
    # A first delay above the cap is kept, not lowered.
    assert backoff_delay(3, 7200) == 7200
    with pytest.raises(ValueError):
        backoff_delay(0, 60)


def test_retry_decision_counts_the_streak():
    options = JobControlOptions(retries=3, retry_delay=60)
    assert decide_retry(1, options).delay == 60
    second = decide_retry(2, options)
    assert (second.attempt, second.retries, second.delay) == (2, 3, 120)
    assert decide_retry(3, options).retrying
    used_up = decide_retry(4, options)
    assert not used_up.retrying and used_up.attempt == 4
    assert decide_retry(1, JobControlOptions(retries=0)) is None
    assert decide_retry(0, options) is None


@pytest.mark.parametrize(
    ("status", "previous", "policy", "event"),
    [
        ("f", "s", "failure", "failure"),
        ("i", None, "failure", "failure"),
        ("d", "s", "failure", "aborted"),
        ("s", "f", "failure", "recovered"),
        ("s", "d", "failure", "recovered"),
        ("s", "s", "failure", None),
        ("s", None, "always", "success"),
        ("s", "f", "always", "recovered"),
        ("f", "s", "never", None),
        ("r", None, "always", None),
    ],
)
def test_alert_events(status, previous, policy, event):
    assert alert_event(status, previous, policy) == event


REPORT = RunReport(
    job_name="nightly load",
    status="f",
    start=datetime(2025, 1, 3, 2, 0, tzinfo=UTC),
    duration=12.34,
    step_name="20 load",
    step_status="f",
    step_result=-1,
    step_output="ERROR:  division by zero\n" + "x" * 3000,
    previous_status="s",
)


def test_failure_document_is_readable_and_complete():
    note = RetryNote(2, 3, datetime(2025, 1, 3, 2, 3, tzinfo=UTC), True)
    doc = build_alert(
        "failure", job_id=42, run_id=1234, report=REPORT, station="db1", agent_pid=77, retry=note
    )
    json.dumps(doc)  # serialisable as it is
    assert doc["text"].startswith(
        'pyagent: job 42 "nightly load" failed (run 1234 on db1, 12.3 s). '
        'Step "20 load" result -1. Retry 2 of 3 at 2025-01-03T02:03:00+00:00.'
    )
    assert "```\nERROR:  division by zero" in doc["text"]
    assert len(doc["text"]) < 1000
    assert doc["job_id"] == 42 and doc["run_id"] == 1234 and doc["status"] == "f"
    assert doc["start"] == "2025-01-03T02:00:00+00:00"
    assert doc["duration_seconds"] == 12.34 and doc["station"] == "db1"
    assert doc["step"]["name"] == "20 load" and doc["step"]["result"] == -1
    assert doc["step"]["output"].startswith("ERROR:  division by zero")
    assert len(doc["step"]["output"]) == 2000
    assert doc["retry"] == {
        "attempt": 2,
        "retries": 3,
        "retrying": True,
        "next_run": "2025-01-03T02:03:00+00:00",
    }


def test_recovered_document():
    ok = RunReport("nightly load", "s", REPORT.start, 3.0, "20 load", "s", 1, "", "f")
    doc = build_alert("recovered", job_id=42, run_id=1240, report=ok, station="db1")
    assert doc["text"] == (
        'pyagent: job 42 "nightly load" recovered: succeeded (run 1240 on db1, 3 s) '
        "after failing."
    )
    assert doc["event"] == "recovered" and doc["retry"] is None


def test_chat_text_escapes_job_text_and_the_document_keeps_it_exact():
    hostile = RunReport(
        job_name="evil\x1b]52;c;cHduZWQ=\x07name\nsecond\u202e",
        status="f",
        start=REPORT.start,
        duration=1.0,
        step_name="s\x1b[2J\x9b",
        step_status="f",
        step_result=1,
        step_output="out\x1b]0;TITLE\x07\x1b[31mred\nline two\ttab",
        previous_status=None,
    )
    doc = build_alert("failure", job_id=7, run_id=8, report=hostile, station="db1")
    for text in (doc["text"], doc["summary"]):
        assert not any(c in text for c in "\x1b\x07\x9b\u202e"), text
    assert doc["summary"].startswith(
        'pyagent: job 7 "evil\\x1b]52;c;cHduZWQ=\\x07name\\nsecond\\u202e" failed'
    )
    assert 'Step "s\\x1b[2J\\x9b"' in doc["summary"]
    # The output excerpt stays a block: its lines and tabs are kept.
    assert "```\nout\\x1b]0;TITLE\\x07\\x1b[31mred\nline two\ttab\n```" in doc["text"]
    assert doc["job_name"] == hostile.job_name
    assert doc["step"]["name"] == hostile.step_name
    assert doc["step"]["output"] == hostile.step_output


def test_safe_url_keeps_only_scheme_and_host_and_says_credentials_were_given():
    url = "https://user:pw@hooks.example.com:8443/services/T000/B000/XXXXSECRET?token=abc"
    assert safe_url(url) == "https://hooks.example.com:8443 (with credentials)"
    assert safe_url("http://127.0.0.1/x") == "http://127.0.0.1"
    assert safe_url("http://tok3n@[::1]:9/x") == "http://[::1]:9 (with credentials)"


def test_webhook_user_info_becomes_basic_auth_and_leaves_the_url():
    hook = parse_webhook(" https://al%40ice:p%3Ass%2Fw%C3%B6rd@hooks.example.com/h?t=1 ")
    assert hook.url == "https://hooks.example.com/h?t=1"
    assert hook.shown == "https://hooks.example.com (with credentials)"
    assert hook.authorization == "Basic " + base64.b64encode("al@ice:p:ss/wörd".encode()).decode()
    assert "p%3Ass" not in repr(hook) and (hook.authorization or "") not in repr(hook)
    # A user name alone (a token) is sent with an empty password.
    token = parse_webhook("http://t0ken@127.0.0.1:8080/h")
    assert token.authorization == "Basic " + base64.b64encode(b"t0ken:").decode()
    assert token.url == "http://127.0.0.1:8080/h"
    plain = parse_webhook("http://127.0.0.1/h")
    assert plain.authorization is None and plain.shown == "http://127.0.0.1"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://h/S3CR3T", "not an http:// or https:// URL with a host name"),
        ("http://alice:S3CR3T/x@h/hook", "the port is not a number"),
        ("http://alice:S3CR3T#x@h/hook", "must be percent-encoded"),
        ("http://al%3Aice:S3CR3T@h/hook", "basic authentication cannot carry"),
    ],
)
def test_a_bad_webhook_url_is_refused_without_quoting_it(url, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_webhook(url)
    assert "S3CR3T" not in str(caught.value) and "alice" not in str(caught.value)


def test_webhook_secrets_cover_the_credentials_as_written_and_decoded():
    url = "https://alice:p%40ss@hooks.example.com/services/XXXX?token=abc"
    secrets = set(webhook_secrets(url))
    assert {url, "/services/XXXX", "token=abc", "alice:p%40ss", "p%40ss", "p@ss"} <= secrets
    # A user name beside a password is not scrubbed from every log line; a lone one is.
    assert "alice" not in secrets
    assert "t0ken" in webhook_secrets("https://t0ken@hooks.example.com/")


# ---- dispatcher -------------------------------------------------------------------------


class FakeDispatcher(AlertDispatcher):
    """Deliveries go to a coroutine supplied by the test."""

    def __init__(self, deliver, **kwargs):
        super().__init__(command="true", **kwargs)
        self.calls: list[int] = []
        self._fake = deliver

    async def _deliver(self, sink, item):
        self.calls.append(item.doc["run_id"])
        await self._fake(item)


def run(coro):
    return asyncio.run(coro)


def test_failed_delivery_is_retried_then_given_up():
    counts: list[tuple[str, str]] = []

    async def failing(_item):
        raise DeliveryError("exit status 1")

    async def scenario():
        d = FakeDispatcher(
            failing,
            count=lambda sink, outcome: counts.append((sink, outcome)),
            first_pause=0.01,
            longest_pause=0.02,
            retry_for=0.2,
        )
        d.start()
        d.submit({"job_id": 1, "run_id": 7})
        while ("command", "failed") not in counts:
            await asyncio.sleep(0.01)
        await d.close(drain_for=0)
        return d.calls

    calls = run(scenario())
    assert len(calls) >= 3 and set(calls) == {7}
    assert counts == [("command", "failed")]


def test_permanent_failure_is_not_retried():
    counts: list[tuple[str, str]] = []

    async def rejected(_item):
        raise DeliveryError("HTTP status 404", permanent=True)

    async def scenario():
        d = FakeDispatcher(rejected, count=lambda s, o: counts.append((s, o)), first_pause=0.01)
        d.start()
        d.submit({"job_id": 1, "run_id": 8})
        while not counts:
            await asyncio.sleep(0.01)
        await d.close(drain_for=0)
        return d.calls

    assert run(scenario()) == [8]
    assert counts == [("command", "failed")]


def test_a_hanging_sink_costs_slots_and_a_full_queue_drops():
    counts: list[tuple[str, str]] = []
    release = None

    async def hanging(_item):
        await release.wait()

    async def scenario():
        nonlocal release
        release = asyncio.Event()
        d = FakeDispatcher(hanging, count=lambda s, o: counts.append((s, o)), queue_size=2, slots=1)
        d.start()
        for run_id in range(5):
            d.submit({"job_id": 1, "run_id": run_id})  # never waits
            await asyncio.sleep(0)
        dropped = counts.count(("command", "dropped"))
        release.set()
        await d.close(drain_for=5)
        return dropped

    dropped = run(scenario())
    # One in the slot, two queued, two dropped; the rest delivered once released.
    assert dropped == 2
    assert counts.count(("command", "sent")) == 3
