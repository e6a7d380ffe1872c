"""Load test of ``inbedder serve``: dynamic batching on against off, in one run.

Starts two servers on loopback (the same model, ``--no-batching`` for the second; an idle
server uses no CPU) and for N = 1, 4, 16, 64 concurrent clients (httpx, async) sends a
bounded number of one-text ``/v1/embeddings`` requests (shipped support messages under one
instruction), alternating between the servers. Prints throughput, p50/p99 latency, errors and the server's peak RSS
(``VmHWM``), and the batching speed-up per N.

    nice -n 10 .venv/bin/python benchmarks/serve_load.py [--model NAME] [--dtype bfloat16] [--clients 1 4 16 64]
        [--requests-per-client 2] [--min-requests 16] [--max-requests 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from inbedder_retrieval.samples import load_sample

INSTRUCTION = "How does the customer feel?"


@dataclass(frozen=True)
class Row:
    mode: str
    clients: int
    requests: int
    seconds: float
    latencies: list[float]
    errors: int
    peak_rss_mb: float
    mean_batch: float  # requests merged per model call (from the server's /metrics)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str | None, batching: bool, dtype: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-c", "import sys; from inbedder_retrieval.cli import main; sys.exit(main())",
               "serve", "--port", str(port), "--log-level", "warning"]
    command += ["--model", model] if model else []
    command += ["--dtype", dtype] if dtype else []
    command += [] if batching else ["--no-batching"]
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.5)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def load(base: str, clients: int, texts: list[str]) -> tuple[float, list[float], int]:
    """``clients`` workers share the ``texts`` (one request each); (seconds, latencies, errors)."""
    pending = list(texts)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=base, timeout=300,
                                 limits=httpx.Limits(max_connections=clients + 4)) as client:
        async def worker() -> None:
            nonlocal errors
            while pending:
                text = pending.pop()
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/embeddings", json={"input": text, "instruction": INSTRUCTION})
                    ok = response.status_code == 200 and len(response.json()["data"]) == 1
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, latencies, errors


def batch_counts(base: str) -> tuple[float, float]:
    """(model batches, requests in them) so far, from the server's Prometheus metrics."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    values = {}
    for name in ("inbedder_batch_requests_count", "inbedder_batch_requests_sum"):
        values[name] = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + "{"))
    return values["inbedder_batch_requests_count"], values["inbedder_batch_requests_sum"]


def measure(servers: dict[str, tuple[subprocess.Popen, str]], client_counts: list[int], per_client: int,
            minimum: int, maximum: int, messages: list[str]) -> list[Row]:
    """For each N, rounds in the order on, off, off, on (half the requests each), so slow
    drift of a shared machine's load hits both modes alike; rows sum the rounds."""
    for _, base in servers.values():
        asyncio.run(load(base, 2, messages[:4]))  # warm-up
    rows, offset = [], 4
    for clients in client_counts:
        count = min(maximum, max(minimum, per_client * clients))
        totals = {mode: (0.0, [], 0) for mode in servers}
        before = {mode: batch_counts(base) for mode, (_, base) in servers.items()}
        for mode in ("on", "off", "off", "on"):
            texts = [messages[(offset + i) % len(messages)] for i in range(count // 2)]
            offset += len(texts)
            seconds, latencies, errors = asyncio.run(load(servers[mode][1], clients, texts))
            total = totals[mode]
            totals[mode] = (total[0] + seconds, total[1] + latencies, total[2] + errors)
        for mode, (seconds, latencies, errors) in totals.items():
            batches, requests = (after - first for after, first in zip(batch_counts(servers[mode][1]), before[mode]))
            rows.append(Row(f"batching {mode}", clients, len(latencies), seconds, latencies, errors,
                            peak_rss_mb(servers[mode][0].pid), requests / batches if batches else float("nan")))
            print(f"batching {mode:3} N={clients:<3} {len(latencies)} requests in {seconds:.1f} s", file=sys.stderr,
                  flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model to serve (default: the shipped one)")
    parser.add_argument("--dtype", default=None, help="both servers' dtype (default: the server's, fp32 on a CPU)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--min-requests", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=64)
    args = parser.parse_args()
    messages = [record["text"] for record in load_sample("support_messages")]
    servers = {"on": start_server(args.model, True, args.dtype), "off": start_server(args.model, False, args.dtype)}
    try:
        rows = measure(servers, args.clients, args.requests_per_client, args.min_requests, args.max_requests, messages)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)
    print("| mode | clients | requests | throughput (req/s) | p50 (ms) | p99 (ms) | errors | requests per batch "
          "| server peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.mode} | {row.clients} | {row.requests} | {row.throughput:.2f} | {row.percentile(0.5):.0f} | "
              f"{row.percentile(0.99):.0f} | {row.errors} | {row.mean_batch:.1f} | {row.peak_rss_mb:.0f} |")
    on = {row.clients: row for row in rows if row.mode == "batching on"}
    off = {row.clients: row for row in rows if row.mode == "batching off"}
    print("\n| clients | throughput ratio (on / off) |\n|---|---|")
    for clients in dict.fromkeys(args.clients):
        print(f"| {clients} | {on[clients].throughput / off[clients].throughput:.2f}x |")
    if any(row.errors for row in rows):
        sys.exit(f"{sum(row.errors for row in rows)} requests failed")


if __name__ == "__main__":
    main()
