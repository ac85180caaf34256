"""Does a hanging alert receiver slow the agent down? A burst of failing SQL jobs (each
failure is an alert) run by pyagent without alerts, with a webhook that answers at once,
and with a webhook that never answers (127.0.0.1 only). Prints one JSON line per case and
a small table; the jobs/s of the three cases should be alike.

    python benchmarks/alerts_hanging.py [--jobs 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import BenchCluster
from benchmarks.workloads import burst


class Receiver:
    """A local webhook receiver that answers at once, or holds every request forever."""

    def __init__(self, *, hang: bool) -> None:
        self.received = 0
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received += 1
                if hang:
                    receiver.release.wait(600)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *_a: None  # type: ignore[method-assign]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bench = BenchCluster.create()
    rows: list[tuple[str, int, dict[str, Any], int]] = []
    try:
        for round_no in range(1, args.rounds + 1):
            for case in ("no alerts", "webhook up", "webhook hanging"):
                receiver = None if case == "no alerts" else Receiver(hang=case.endswith("hanging"))
                extra = ["--alert-webhook", receiver.url] if receiver else []
                try:
                    stats = burst(
                        bench, "pyagent", args.jobs, label="alerts", agent_args=extra,
                        code="SELECT 1/0",
                    )
                finally:
                    received = receiver.received if receiver else 0
                    if receiver:
                        receiver.close()
                rows.append((case, round_no, stats, received))
                print(json.dumps({"case": case, "round": round_no, "received": received, **stats},
                                 default=str), flush=True)
    finally:
        bench.destroy()
    print("\n| case | round | jobs/s | all finished (s) | failures | alerts received | agent CPU s |")
    print("|---|---|---|---|---|---|---|")
    for case, round_no, st, received in rows:
        print(f"| {case} | {round_no} | {st['jobs_per_s']} | {st['all_finished_s']} |"
              f" {st['failures']} | {received} | {st['agent_cpu_s']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
