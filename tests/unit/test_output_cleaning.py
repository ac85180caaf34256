"""clean_text (storable step output) and the batch-step output format."""

from __future__ import annotations

import pytest

from pyagent.steps.batch import format_batch_output
from pyagent.steps.result import DEFAULT_MAX_OUTPUT_BYTES, clean_text


def marker(dropped: int) -> str:
    return f"\n[pyagent: output truncated, {dropped} more bytes not stored]\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", ""),
        ("", ""),
        (b"plain ascii\n", "plain ascii\n"),
        ("already text: é ✓", "already text: é ✓"),
        ("é ✓ 😀".encode(), "é ✓ 😀"),
        (b"a\xffb", "a\ufffdb"),  # invalid byte
        (b"a\xc3", "a\ufffd"),  # truncated sequence at the end
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),  # encoded surrogate is invalid UTF-8
        (b"a\x00b\x00", "a\ufffdb\ufffd"),  # NUL cannot be stored in text
        ("a\x00b", "a\ufffdb"),
        ("a\udcffb", "a\ufffdb"),  # str from surrogateescape decoding
        (b"\r\n\t\x1b[0m", "\r\n\t\x1b[0m"),  # other control characters are kept
    ],
)
def test_clean_text(data, expected):
    assert clean_text(data) == expected


def test_result_is_always_encodable_and_nul_free():
    text = clean_text(bytes(range(256)) * 3)
    text.encode("utf-8")
    assert "\x00" not in text


def test_cap_exact_size_has_no_marker():
    assert clean_text(b"x" * 10, max_bytes=10) == "x" * 10


def test_cap_adds_marker_with_dropped_count():
    assert clean_text(b"x" * 15, max_bytes=10) == "x" * 10 + marker(5)


def test_cap_counts_bytes_not_characters():
    # "é" is two bytes: a cap in the middle of a character leaves a replacement character.
    assert clean_text("ééé", max_bytes=3) == "é\ufffd" + marker(3)


def test_cap_zero():
    assert clean_text(b"abc", max_bytes=0) == marker(3)


def test_default_cap():
    big = b"y" * (DEFAULT_MAX_OUTPUT_BYTES + 7)
    assert clean_text(big) == "y" * DEFAULT_MAX_OUTPUT_BYTES + marker(7)


# Batch-step output: stdout, then pgAgent's "Script Error:" block when stderr had anything.


def test_batch_output_stdout_only():
    assert format_batch_output(b"out\n", b"") == "out\n"


def test_batch_output_pgagent_format():
    assert format_batch_output(b"out\n", b"err\n") == "out\n\nScript Error: \nerr\n\n"
    assert format_batch_output(b"", b"err") == "\nScript Error: \nerr\n"
    assert format_batch_output(b"", b"") == ""


def test_batch_output_cleans_each_stream():
    # A character split between the streams must not be glued back together.
    assert format_batch_output(b"a\xc3", b"\xa9\x00") == "a\ufffd\nScript Error: \n\ufffd\ufffd\n"


def test_batch_output_markers_per_stream():
    assert format_batch_output(b"o", b"e", stdout_dropped=4, stderr_dropped=9) == (
        "o" + marker(4) + "\nScript Error: \ne" + marker(9) + "\n"
    )


def test_batch_output_stderr_all_dropped_still_reported():
    assert (
        format_batch_output(b"", b"", stderr_dropped=5) == "\nScript Error: \n" + marker(5) + "\n"
    )


def test_batch_marker_matches_clean_text():
    assert format_batch_output(b"abc", b"", stdout_dropped=2) == clean_text(b"abcde", max_bytes=3)
