"""Named-block SQL files: `-- name: block_name` headers, one statement per block.

A `-- fragment: x` block is not a statement: `{{x}}` in any later block is replaced by its
text at load time, so a predicate shared by two statements is written once. Only fixed SQL
text is composed this way; values are always bound parameters.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK_HEADER = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{\{(\w+)\}\}")
_TRAILING_COMMENTS = re.compile(r"(?:^\s*--.*$\n?|^\s*$\n?)+\Z", re.MULTILINE)
_COMMENT_LINE = re.compile(r"^\s*--.*$\n?", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, str]:
    """The named statements of one SQL text, keyed by name, with fragments included.
    A duplicate name, an unknown fragment or a fragment defined too late is an error."""
    statements: dict[str, str] = {}
    fragments: dict[str, str] = {}
    matches = list(_BLOCK_HEADER.finditer(text))
    for i, match in enumerate(matches):
        kind, name = match.group(1), match.group(2)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = _TRAILING_COMMENTS.sub("", text[match.end() : end]).strip()
        if name in statements or name in fragments:
            raise ValueError(f"duplicate query block {name!r}")

        def include(ref: re.Match[str], block: str = name) -> str:
            if ref.group(1) not in fragments:
                raise ValueError(f"block {block!r} uses unknown fragment {ref.group(1)!r}")
            return fragments[ref.group(1)]

        body = _INCLUDE.sub(include, body)
        if kind == "fragment":
            # Its comments stay in the file; the statements get the bare predicate.
            fragments[name] = _COMMENT_LINE.sub("", body).strip()
        else:
            statements[name] = body
    return statements


@cache
def load_blocks(package: str, filename: str) -> dict[str, str]:
    """The named blocks of a `.sql` file shipped inside a package (loaded once)."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_blocks(text)
