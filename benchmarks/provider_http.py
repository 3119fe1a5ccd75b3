"""What carrying provider retries on tenacity costs: its import, and each request's overhead.

    .venv/bin/python benchmarks/provider_http.py            # 2000 requests
    .venv/bin/python benchmarks/provider_http.py --quick    # 300 requests

Rows: the wall time of ``import tenacity`` in a fresh interpreter that has already imported greenflow's
provider modules (median of 7), which ``ProviderSession.get`` pays once on its first request (the import
is deferred so a ``greenflow run`` that never asks a provider does not); and the median / p99 time of one
``ProviderSession.get`` against a local HTTP server answering 200 at once (no retry happens, so the row
is the retry machinery's fixed cost plus requests and the loopback round trip); and the tenacity loop
alone, without I/O, which is what carrying retries on tenacity adds to every request.

Prints a markdown table and writes it to ``benchmarks/results/provider_http.md``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from greenflow.intensity.providers.http import ProviderSession, RetrySettings

RESULTS = Path(__file__).parent / "results" / "provider_http.md"
IMPORT_PROBE = (
    "import time, greenflow.intensity.providers.ukgrid\n"
    "t = time.perf_counter(); import tenacity\n"
    "print(time.perf_counter() - t)"
)


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body in two writes meet delayed ACKs: 40 ms a request

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def import_ms() -> float:
    runs = [
        float(subprocess.run([sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True).stdout)
        for _ in range(7)
    ]
    return statistics.median(runs) * 1000


def loop_us(count: int) -> float:
    """The retry machinery alone: one successful attempt through the same tenacity set-up, no I/O."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

    started = time.perf_counter()
    for _ in range(count):
        retrying = Retrying(
            stop=stop_after_attempt(6) | stop_before_delay(30.0),
            retry=retry_if_exception_type(ConnectionError),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                pass
    return (time.perf_counter() - started) / count * 1e6


def request_ms(count: int) -> tuple[float, float]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    session = ProviderSession("bench", f"http://{host!s}:{port}", RetrySettings())
    session.get("/warm")
    times = []
    for _ in range(count):
        started = time.perf_counter()
        session.get("/data", headers={"auth-token": "bench-token"})
        times.append((time.perf_counter() - started) * 1000)
    server.shutdown()
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 300 if args.quick else 2000
    median, p99 = request_ms(count)
    rows = [
        "| measure | value |",
        "|---|---|",
        f"| `import tenacity` after greenflow's provider modules (median of 7) | {import_ms():.1f} ms |",
        f"| `ProviderSession.get`, 200 from a loopback server, median of {count} | {median:.2f} ms |",
        f"| same, p99 | {p99:.2f} ms |",
        f"| the tenacity loop alone (one attempt, no I/O), mean of {count * 5} | {loop_us(count * 5):.0f} us |",
    ]
    table = "\n".join(rows)
    print(table)
    RESULTS.write_text(f"# Provider HTTP (tenacity retries)\n\n{table}\n")


if __name__ == "__main__":
    main()
