"""Named-block SQL files: `-- name: block_name` headers, one statement per block."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def parse_blocks(text: str) -> dict[str, str]:
    """The named blocks of one SQL text, keyed by name; a duplicate name is an error."""
    found: dict[str, str] = {}
    matches = list(_BLOCK_HEADER.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        if match.group(1) in found:
            raise ValueError(f"duplicate query block {match.group(1)!r}")
        found[match.group(1)] = text[match.end() : end].strip()
    return found


@cache
def load_blocks(package: str, filename: str) -> dict[str, str]:
    """The named blocks of a `.sql` file shipped inside a package (loaded once)."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_blocks(text)
