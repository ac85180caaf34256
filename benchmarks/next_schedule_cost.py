"""Cost of one pgagent.pga_next_schedule call: ours versus the pgAgent 4.2 extension.

Starts a throwaway cluster, installs our schema in one database and (when the Debian pgagent
package is installed) the real extension in another, then times typical and worst-case
schedules. Each figure is the mean over a batch of calls made inside one statement
(`SELECT ... FROM generate_series(1, n)`), so client round trips are not counted.

    python benchmarks/next_schedule_cost.py [--calls N]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import psycopg

from pyagent import schema
from pyagent.devcluster import Cluster

JOB_SQL = "INSERT INTO pgagent.pga_job (jobid, jobjclid, jobname, jobenabled) VALUES (1, 1, 'bench', false)"
EXT_TIMEOUT = "5s"


def flags(enabled: set[int], size: int, base: int = 0) -> list[bool]:
    return [i + base in enabled for i in range(size)]


@dataclass
class Case:
    name: str
    minutes: set[int] = field(default_factory=set)
    hours: set[int] = field(default_factory=set)
    weekdays: set[int] = field(default_factory=set)  # 0 = Sunday
    monthdays: set[int] = field(default_factory=set)  # 1..31, 32 = last day
    months: set[int] = field(default_factory=set)  # 1..12
    start: str = "now() - interval '1 day'"
    timezone: str = "UTC"
    exceptions: str | None = None  # SQL producing (jexdate, jextime) rows


CASES = [
    Case("every minute (all empty)"),
    Case("every 5 minutes", minutes=set(range(0, 60, 5))),
    Case("daily 03:00", minutes={0}, hours={3}),
    Case("weekdays 09:00", minutes={0}, hours={9}, weekdays={1, 2, 3, 4, 5}),
    Case("1st of month 00:00", minutes={0}, hours={0}, monthdays={1}),
    Case("last day of month 23:59", minutes={59}, hours={23}, monthdays={32}),
    Case(
        "Feb 29 that is a Monday, from 2073",
        minutes={0},
        hours={0},
        weekdays={1},
        monthdays={29},
        months={2},
        start="'2073-01-01 00:00+00'::timestamptz",
    ),
    Case("impossible: Feb 30", minutes={0}, hours={0}, monthdays={30}, months={2}),
    Case(
        "heavy exceptions: 1000 whole days",
        minutes={0},
        hours={3},
        exceptions="SELECT current_date + i, NULL::time FROM generate_series(0, 999) AS i",
    ),
    Case(
        "heavy exceptions: 1000 times of day",
        exceptions="SELECT NULL::date, time '00:00' + i * interval '1 minute' FROM generate_series(0, 999) AS i",
    ),
    Case(
        "all times excluded (time exception)",
        minutes={0},
        hours={3},
        exceptions="SELECT NULL::date, time '03:00'",
    ),
    Case(
        "New York, Mar 8-14 Sunday 02:30 (always in the DST gap)",
        minutes={30},
        hours={2},
        weekdays={0},
        monthdays=set(range(8, 15)),
        months={3},
        timezone="America/New_York",
    ),
    Case(
        "New York, daily 01:30, start at the fall-back",
        minutes={30},
        hours={1},
        start="'2027-11-07 05:45+00'::timestamptz",
        timezone="America/New_York",
    ),
]


def setup(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute(JOB_SQL)
    for jscid, case in enumerate(CASES, start=1):
        conn.execute(
            "INSERT INTO pgagent.pga_schedule (jscid, jscjobid, jscname, jscenabled) VALUES (%s, 1, %s, false)",
            [jscid, case.name],
        )
        if case.exceptions:
            conn.execute(
                f"INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime) SELECT {jscid}, * FROM ({case.exceptions}) AS e"
            )


def time_case(
    conn: psycopg.Connection[tuple[object, ...]], jscid: int, case: Case, calls: int
) -> tuple[str, str]:
    conn.execute("SELECT set_config('TimeZone', %s, false)", [case.timezone])
    args = [
        flags(case.minutes, 60),
        flags(case.hours, 24),
        flags(case.weekdays, 7),
        flags(case.monthdays, 32, 1),
        flags(case.months, 12, 1),
    ]
    one = f"pgagent.pga_next_schedule(%s, {case.start}, NULL, %s, %s, %s, %s, %s)"
    try:
        row = conn.execute(f"SELECT {one}::text", [jscid, *args]).fetchone()
        result = str(row[0]) if row else "?"
        n = calls
        started = time.perf_counter()
        conn.execute(f"SELECT count({one}) FROM generate_series(1, {n})", [jscid, *args])
        elapsed = time.perf_counter() - started
        return f"{elapsed / n * 1000:.3f}", result
    except psycopg.errors.QueryCanceled:
        return f">{EXT_TIMEOUT}", "(statement timeout)"
    except psycopg.Error as exc:
        return "error", (exc.diag.message_primary or str(exc)).strip()[:40]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per timing batch")
    opts = parser.parse_args()
    cluster = Cluster.create()
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ours")
            conn.execute("CREATE DATABASE ext")
        ours = psycopg.connect(cluster.dsn("ours"), autocommit=True)
        schema.install_on(ours)
        setup(ours)
        ext: psycopg.Connection[tuple[object, ...]] | None = None
        candidate = psycopg.connect(cluster.dsn("ext"), autocommit=True)
        try:
            candidate.execute("CREATE EXTENSION pgagent")
            setup(candidate)
            candidate.execute(f"SET statement_timeout = '{EXT_TIMEOUT}'")
            ext = candidate
        except psycopg.Error:
            candidate.close()
        header = f"{'case':58} {'ours ms':>8} {'ext ms':>8}  our result / extension result"
        print(header)
        print("-" * len(header))
        for jscid, case in enumerate(CASES, start=1):
            ours_ms, ours_result = time_case(ours, jscid, case, opts.calls)
            if ext is not None:
                # the extension can run for minutes on hopeless schedules: time fewer calls
                ext_ms, ext_result = time_case(ext, jscid, case, max(opts.calls // 10, 5))
            else:
                ext_ms, ext_result = "n/a", "(extension not installed)"
            print(f"{case.name:58} {ours_ms:>8} {ext_ms:>8}  {ours_result} / {ext_result}")
        ours.close()
        if ext is not None:
            ext.close()
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
