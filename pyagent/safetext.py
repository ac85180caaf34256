"""Job text made safe to show on a terminal, in a log line or in a chat message.

Everyone who can edit a job controls its name, comment, step names, code and output. Shown
raw, that text can drive the operator's terminal (ESC and the one-character CSI U+009B start
escape sequences: title changes, clipboard writes through OSC 52, screen clears), reorder
what is shown (bidirectional overrides), hide characters, or break a table row or a log
line in two. `safe_text` is the one function every human-readable surface uses; JSON keeps
the exact text (`safe_json` only spells the same characters as JSON escapes). Stored rows
are never changed.

What is escaped (in both modes):
- C0 controls U+0000-U+001F, DEL and the C1 controls U+0080-U+009F: `\\x1b`, `\\x9b`;
- invisible format characters (Unicode category Cf: bidirectional embeddings, overrides,
  isolates and marks, zero-width space, word joiner, BOM, soft hyphen, tag characters...),
  the line and paragraph separators U+2028/U+2029, and lone surrogates: `\\u202e`,
  `\\U000e0041`. Zero-width (non-)joiners U+200C/U+200D stay: scripts and emoji need them.

Single-line mode (names, table cells, log lines): tab, newline and carriage return are
escaped too (`\\t`, `\\n`, `\\r`) and every backslash is doubled, so the field stays one
line and distinct texts always look distinct (the escaping is a Python-style literal body).

Block mode (step output, code, comments, shown as blocks): tabs, newlines and CR before LF
stay; a lone CR is `\\x0d`. Backslashes stay as written (code keeps reading like code),
except that a run of backslashes right before something that reads like one of the escapes
(`x` and 2, `u` and 4, `U` and 8 lowercase hex digits, or an escaped character) is doubled,
so a written `\\x1b` and a real ESC still look different.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

# Unicode category Cf (as of Unicode 15) but ZWNJ/ZWJ, line/paragraph separators, surrogates.
_BMP_FORMAT: Final = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
)
class _Lazy:
    """A pattern compiled on first use. A character class holding the astral range costs
    about 120 KB compiled; the agent, which only writes single-line text, needs one of
    these patterns, the management commands the others."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._pattern: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            self._pattern = re.compile(self._source)
        return self._pattern

    def sub(self, repl: Callable[[re.Match[str]], str], text: str) -> str:
        return self.compiled.sub(repl, text)

    def search(self, text: str) -> re.Match[str] | None:
        return self.compiled.search(text)


_ASTRAL_RANGES: Final = (
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
_ASTRAL_FORMAT: Final = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _ASTRAL_RANGES)
_FORMAT: Final = _BMP_FORMAT + _ASTRAL_FORMAT
_ASTRAL_ESCAPED: Final = frozenset(chr(c) for lo, hi in _ASTRAL_RANGES for c in range(lo, hi + 1))
# The scans look for candidates in one character class that covers the whole astral range
# (the callbacks pass non-format astral characters through): a class mixing BMP and astral
# ranges is matched range by range, about five times slower on plain text.
_ASTRAL: Final = "\U00010000-\U0010ffff"
_LINE_CANDIDATES: Final = _Lazy(f"[\\\\\x00-\x1f\x7f-\x9f{_BMP_FORMAT}{_ASTRAL}]")
_BLOCK_CLASS: Final = f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BMP_FORMAT}{_ASTRAL}]"
_BLOCK_CANDIDATES: Final = _Lazy(_BLOCK_CLASS)
# With backslashes in the text: a whole run of them (never part of one: the lookbehind and
# the possessive `++` keep a long run linear) is doubled when what follows could be read as
# an escape.
_ESCAPE_LOOKING: Final = "x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8}"
_BLOCK_ESCAPED: Final = f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_FORMAT}]|\r(?!\n)"
_BLOCK_CANDIDATES_OR_RUNS: Final = _Lazy(
    f"(?<!\\\\)\\\\++(?={_ESCAPE_LOOKING}|{_BLOCK_ESCAPED})|{_BLOCK_CLASS}"
)
_SHORT: Final = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _line_replacement(match: re.Match[str]) -> str:
    char = match.group()
    if char > "\uffff" and char not in _ASTRAL_ESCAPED:
        return char
    return _SHORT.get(char) or _escape(char)


def _block_replacement(match: re.Match[str]) -> str:
    found = match.group()
    first = found[0]
    if first == "\\":
        return found * 2
    if first == "\r" and match.string.startswith("\n", match.end()):
        return first
    if first > "\uffff" and first not in _ASTRAL_ESCAPED:
        return first
    return _escape(first)


def safe_text(text: str, *, block: bool = False) -> str:
    """`text` with every control, bidirectional and invisible format character made visible
    and inert; single-line (the default) also escapes tab, newline, CR and backslash, block
    mode keeps tabs and line breaks. See the module's docstring for the exact rules."""
    if not block:
        return _LINE_CANDIDATES.sub(_line_replacement, text)
    if "\\" in text:
        return _BLOCK_CANDIDATES_OR_RUNS.sub(_block_replacement, text)
    return _BLOCK_CANDIDATES.sub(_block_replacement, text)


# JSON escapes C0 controls itself; these are the other characters a terminal may act on.
_JSON_CANDIDATES: Final = _Lazy(f"[\x7f-\x9f{_BMP_FORMAT}{_ASTRAL}]")
# What YAML writes raw (it escapes C0 and C1 controls itself): the format characters.
INVISIBLE: Final = _Lazy(f"[{_FORMAT}]")


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char > "\uffff" and char not in _ASTRAL_ESCAPED:
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def safe_json(document: str) -> str:
    """A JSON document (from json.dumps) with DEL, C1 controls and invisible format
    characters written as \\u escapes: the same data, nothing a terminal acts on."""
    return _JSON_CANDIDATES.sub(_json_escape, document)
