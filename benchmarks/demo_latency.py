"""Request latency of the Gradio demo, as a visitor sees it: upload + queue + inference + pictures + download.

Starts ``demo/app.py`` in its own process (as a Space does) on a free local port, then sends N ``/inspect``
requests through gradio_client with 1 client and with 8 parallel clients, alternating a good and a defective
bundled image. Reports median and p95 latency per request and throughput, as a Markdown table.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/demo_latency.py --requests 50 --clients 1 8
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, run_dir: str | None) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port))
    if run_dir:
        env["HLGFA_RUN_DIR"] = run_dir
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT / "demo", env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the demo exited before answering:\n{server.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the demo did not answer within 180 s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run(url: str, images: list[str], requests: int, clients: int) -> dict:
    from gradio_client import Client, handle_file

    pool_clients = [Client(url, verbose=False) for _ in range(clients)]
    for client in pool_clients:  # warm-up: one request each, not timed
        client.predict(handle_file(images[0]), "bottle (bundled model)", 1.0, api_name="/inspect")

    def one(i: int) -> float:
        client = pool_clients[i % clients]
        started = time.perf_counter()
        result = client.predict(handle_file(images[i % len(images)]), "bottle (bundled model)", 1.0,
                                api_name="/inspect")
        elapsed = time.perf_counter() - started
        if result[2] is None:
            raise RuntimeError(f"request {i} failed: {result[3]}")
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": requests, "median_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * percentile(latencies, 95), "max_ms": 1000 * max(latencies),
            "throughput": requests / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--run-dir", default=None, help="checkpoint to serve (default: the bundled one)")
    args = parser.parse_args()

    import demo_logic
    import torch

    examples = dict(demo_logic.example_images())
    images = [examples["good"], examples["broken large"]]
    port = free_port()
    server = start_server(port, args.run_dir)
    try:
        rows = [run(f"http://127.0.0.1:{port}/", images, args.requests, n) for n in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"demo /inspect latency, {args.requests} requests per row, images "
          f"{', '.join(Path(p).parent.name + '/' + Path(p).name for p in images)} (320 px), "
          f"queue concurrency 2; {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.processor() or platform.machine()}\n")
    print("| clients | requests | median (ms) | p95 (ms) | max (ms) | throughput (req/s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['clients']} | {row['requests']} | {row['median_ms']:.0f} | {row['p95_ms']:.0f} | "
              f"{row['max_ms']:.0f} | {row['throughput']:.2f} |")


if __name__ == "__main__":
    main()
