"""Cost of pyagent.safetext.safe_text per call: on a typical log line, on hostile lines, and
on 1 MB of step output (plain, and full of escapes). It runs on every text log line and on
every text the jobs commands print.

    python benchmarks/safetext_cost.py [--repeat N]
"""

from __future__ import annotations

import argparse
import timeit

from pyagent.safetext import safe_json, safe_text

MB = 1024 * 1024
TYPICAL = (
    'Job 4711 ("nightly vacuum") failed (run 90210, status f): step 17 "20 load" ended f '
    'with result 1: ERROR:  relation "staging.orders" does not exist'
)
HOSTILE = "Evil\x1b]52;c;cHduZWQ=\x07name\nsecond\t\u202eexe.txt\x9b2J \\x1b " * 2
CASES = [
    ("typical log line (150 chars), single-line", TYPICAL, False),
    ("hostile name (110 chars, 12 escapes), single-line", HOSTILE, False),
    ("1 MB of plain output, block", ("A" * 99 + "\n") * (MB // 100), True),
    ("1 MB line of plain text, single-line", "A" * MB, False),
    ("1 MB with an ESC every 100 chars, block", ("\x1b[31m" + "A" * 94 + "\n") * (MB // 100), True),
    ("1 MB of backslashes, block", "\\" * MB, True),
]


def per_call(func: object, repeat: int) -> float:
    timer = timeit.Timer(func)  # type: ignore[arg-type]
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for label, text, block in CASES:
        seconds = per_call(lambda t=text, b=block: safe_text(t, block=b), args.repeat)
        print(f"{label:55} {seconds * 1e6:12.2f} us")
    doc = '{"event": "' + TYPICAL.replace('"', '\\"') + '", "job_id": 4711}'
    seconds = per_call(lambda: safe_json(doc), args.repeat)
    print(f"{'safe_json, typical JSON log event':55} {seconds * 1e6:12.2f} us")


if __name__ == "__main__":
    main()
