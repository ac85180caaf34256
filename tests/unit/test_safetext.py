"""safe_text / safe_json: job text made safe to show, without a database.

The decoders below are the tests' own reading of the documented escapes; that every
escaped text decodes back to its input is what "distinct texts look distinct" means."""

from __future__ import annotations

import json
import re
import sys
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyagent.safetext import safe_json, safe_text

KEPT_FORMAT = {"\u200c", "\u200d"}  # zero-width non-joiner and joiner: scripts, emoji

# Characters a terminal may act on, or that hide, reorder or break lines.
HOSTILE = list(
    "\x00\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f\x85\x9b\x9d\x9f\u00ad\u061c\u200b\u200e"
    "\u2028\u202a\u202e\u2066\u2069\ufeff\ud800\udcff\U000e0041"
)
# Characters that make text look like an escape.
LOOKALIKE = list("\\xuU01bef29ntraF")

texts = st.text(
    alphabet=st.one_of(st.sampled_from(HOSTILE + LOOKALIKE), st.characters()), max_size=60
)


def must_escape(char: str) -> bool:
    """What neither mode may show raw (before the modes' own exceptions)."""
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp", "Cs"):
        return True
    return category == "Cf" and char not in KEPT_FORMAT


def raw_unsafe(shown: str, *, block: bool) -> list[str]:
    found = []
    for i, char in enumerate(shown):
        if block and (char in "\n\t" or (char == "\r" and shown[i + 1 : i + 2] == "\n")):
            continue
        if must_escape(char):
            found.append(char)
    return found


_CODE = r"x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}"


def _char(code: str) -> str:
    return chr(int(code[1:], 16))


def decode_line(shown: str) -> str:
    short = {"\\": "\\", "n": "\n", "t": "\t", "r": "\r"}

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return short.get(code) or _char(code)

    rest = re.sub(rf"\\(\\|n|t|r|{_CODE})", one, shown)
    assert "\\" not in re.sub(rf"\\(\\|n|t|r|{_CODE})", "", shown), "a lone backslash"
    return rest


def decode_block(shown: str) -> str:
    def run(match: re.Match[str]) -> str:
        slashes, code = match.group(1), match.group(2)
        if code is None:
            return slashes
        if len(slashes) % 2:
            return "\\" * (len(slashes) // 2) + _char(code)
        return "\\" * (len(slashes) // 2) + code

    return re.sub(rf"(\\+)({_CODE})?", run, shown)


@pytest.mark.parametrize(
    ("text", "line", "block"),
    [
        ("nightly vacuum", "nightly vacuum", "nightly vacuum"),
        ("é ✓ 😀 👨‍👩‍👧", "é ✓ 😀 👨‍👩‍👧", "é ✓ 😀 👨‍👩‍👧"),
        (
            "evil\x1b]52;c;cHduZWQ=\x07name\nsecond",
            "evil\\x1b]52;c;cHduZWQ=\\x07name\\nsecond",
            "evil\\x1b]52;c;cHduZWQ=\\x07name\nsecond",
        ),
        ("\x9b2J \u202eexe.txt", "\\x9b2J \\u202eexe.txt", "\\x9b2J \\u202eexe.txt"),
        ("a\tb\r\nc\rd", "a\\tb\\r\\nc\\rd", "a\tb\r\nc\\x0dd"),
        ("tag\U000e0041", "tag\\U000e0041", "tag\\U000e0041"),
        # Backslashes: always doubled in a line; in a block only before escape-lookalikes.
        ("C:\\temp\\users", "C:\\\\temp\\\\users", "C:\\temp\\users"),
        ("printf 'a\\\\n' | sed 's/\\r$//'", None, "printf 'a\\\\n' | sed 's/\\r$//'"),
        ("written \\x1b, real \x1b", None, "written \\\\x1b, real \\x1b"),
        ("\\\x1b", "\\\\\\x1b", "\\\\\\x1b"),
        ("\\x1B \\u12 \\xyz", None, "\\x1B \\u12 \\xyz"),  # never produced: left alone
        ("\\😀 \\\r\n \\\r", "\\\\😀 \\\\\\r\\n \\\\\\r", "\\😀 \\\r\n \\\\\\x0d"),
    ],
)
def test_examples(text, line, block):
    if line is not None:
        assert safe_text(text) == line
    assert safe_text(text, block=True) == block


def test_every_control_format_and_separator_character_is_escaped():
    missed = [
        f"U+{code:04X}"
        for code in range(sys.maxunicode + 1)
        if must_escape(chr(code))
        and (safe_text(chr(code)) == chr(code) or safe_text(chr(code), block=True) == chr(code))
        and chr(code) not in "\n\t"
    ]
    assert missed == []


def test_a_newline_in_a_single_line_field_does_not_start_a_line():
    shown = safe_text("one\ntwo\rthree\x0bfour\x0cfive\x1csix\x85seven\u2028eight")
    assert len(shown.splitlines()) == 1


@settings(max_examples=500)
@given(texts)
def test_single_line_output_holds_no_control_and_decodes_back(text):
    shown = safe_text(text)
    assert raw_unsafe(shown, block=False) == []
    assert len(shown.splitlines()) <= 1
    assert decode_line(shown) == text


@settings(max_examples=500)
@given(texts)
def test_block_output_keeps_only_line_breaks_and_tabs_and_decodes_back(text):
    shown = safe_text(text, block=True)
    assert raw_unsafe(shown, block=True) == []
    assert decode_block(shown) == text


@given(texts, texts)
def test_distinct_texts_stay_distinct(a, b):
    if a != b:
        assert safe_text(a) != safe_text(b)
        assert safe_text(a, block=True) != safe_text(b, block=True)


def test_a_long_run_of_backslashes_is_handled_in_one_pass():
    run = "\\" * 200_000
    assert safe_text(run + "z", block=True) == run + "z"
    assert safe_text(run + "x1b", block=True) == run * 2 + "x1b"
    assert safe_text(run) == run * 2


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | texts,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(texts, kids, max_size=3),
        max_leaves=6,
    )
)
@example({"\ud800\udcff": None})
def test_safe_json_is_the_same_data_with_nothing_a_terminal_acts_on(data):
    shown = safe_json(json.dumps(data, ensure_ascii=False, indent=2))
    # The same data as JSON's own escaped form gives back: a lone high surrogate followed
    # by a lone low one (text no database or UTF-8 file can hold) reads back as one
    # character from any escaped JSON, json.dumps(data) included.
    assert json.loads(shown) == json.loads(json.dumps(data))
    assert [c for c in shown if must_escape(c) and c not in "\n"] == []
