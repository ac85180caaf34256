"""Named-block SQL files: `-- name: block_name` headers, one statement per block.

A `-- fragment: x` block is not a statement: `{{x}}` in any later block is replaced by its
text at load time, so a predicate shared by two statements is written once. Fragments of
`shared.sql` (in the same package) can be used in every file, so a predicate used by two
files is written once too. Only fixed SQL text is composed this way; values are always
bound parameters.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_BLOCK_HEADER = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"\{\{(\w+)\}\}")
_TRAILING_COMMENTS = re.compile(r"(?:^\s*--.*$\n?|^\s*$\n?)+\Z", re.MULTILINE)
_COMMENT_LINE = re.compile(r"^\s*--.*$\n?", re.MULTILINE)


SHARED_FILE = "shared.sql"


def parse_blocks(
    text: str,
    shared: dict[str, str] | None = None,
    *,
    fragments_out: dict[str, str] | None = None,
) -> dict[str, str]:
    """The named statements of one SQL text, keyed by name, with fragments included
    (its own, and the `shared` ones). A duplicate name, an unknown fragment or a fragment
    defined too late is an error."""
    statements: dict[str, str] = {}
    fragments: dict[str, str] = dict(shared or {})
    matches = list(_BLOCK_HEADER.finditer(text))
    for i, match in enumerate(matches):
        kind, name = match.group(1), match.group(2)
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = _TRAILING_COMMENTS.sub("", text[match.end() : end]).strip()
        if name in statements or name in fragments:
            # (a fragment of the file may not hide a shared one either)
            raise ValueError(f"duplicate query block {name!r}")

        def include(ref: re.Match[str], block: str = name) -> str:
            if ref.group(1) not in fragments:
                raise ValueError(f"block {block!r} uses unknown fragment {ref.group(1)!r}")
            return fragments[ref.group(1)]

        body = _INCLUDE.sub(include, body)
        if kind == "fragment":
            # Its comments stay in the file; the statements get the bare predicate.
            fragments[name] = _COMMENT_LINE.sub("", body).strip()
            if fragments_out is not None:
                fragments_out[name] = fragments[name]
        else:
            statements[name] = body
    return statements


def _fragments(statements_and_fragments: str) -> dict[str, str]:
    fragments: dict[str, str] = {}
    parse_blocks(statements_and_fragments, fragments_out=fragments)
    return fragments


@cache
def shared_fragments(package: str) -> dict[str, str]:
    """The fragments of the package's shared.sql (empty when it has none)."""
    path = resources.files(package).joinpath(SHARED_FILE)
    if not path.is_file():
        return {}
    return _fragments(path.read_text(encoding="utf-8"))


@cache
def load_blocks(package: str, filename: str) -> dict[str, str]:
    """The named blocks of a `.sql` file shipped inside a package (loaded once), with the
    package's shared fragments available."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    return parse_blocks(text, shared_fragments(package))
