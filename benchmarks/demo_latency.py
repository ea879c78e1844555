"""Request latency of the Gradio demo, as a visitor sees it: upload + queue + inference + pictures + download.

Starts ``demo/app.py`` in its own process (as a Space does) on a free local port, then sends N ``/inspect``
requests with 1 client and with 8 parallel clients, alternating a good and a defective bundled image: by default
the page's own HTTP requests (upload, queue join, event stream, picture downloads), or ``--via gradio_client``.
Reports median and p95 latency per request and throughput, as a Markdown table.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.demo_latency --requests 50 --clients 1 8
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.demo_latency --fit      # time an in-browser fit instead
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hlgfa_lite.tools.cli import positive_int

ROOT = Path(__file__).resolve().parents[1]
LOG = Path(tempfile.gettempdir()) / "hlgfa_demo_latency_server.log"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, run_dir: str | None, threads: int, concurrency: int) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), HLGFA_DEMO_THREADS=str(threads),
               HLGFA_DEMO_CONCURRENCY=str(concurrency))
    if run_dir:
        env["HLGFA_RUN_DIR"] = run_dir
    log = open(LOG, "w")  # a file, not a pipe: a full pipe would stall the server mid-benchmark
    server = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT / "demo", env=env, stdout=log, stderr=log)
    deadline = time.time() + 180
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the demo exited before answering; see {LOG}:\n{LOG.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the demo did not answer within 180 s")


class BrowserLikeClient:
    """One visitor's /inspect exactly as the web page makes it, over plain HTTP: upload the file, join the queue,
    read the event stream until the result, then fetch the pictures it names. (gradio_client adds its own polling,
    up to 50 ms per message, which a browser does not; both are offered, this one is the default.)"""

    def __init__(self, url: str):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=300)
        config = self.http.get("config").json()
        [self.dependency] = [d for d in config["dependencies"] if d.get("api_name") == "inspect"]
        types = {c["id"]: c.get("type") for c in config["components"]}
        self.states = [types[i] == "state" for i in self.dependency["inputs"]]

    def inspect(self, path: str, model: str, sensitivity: float) -> dict:
        name = Path(path).name
        with open(path, "rb") as file:
            [server_path] = self.http.post("gradio_api/upload", files={"files": (name, file)}).raise_for_status().json()
        upload = {"path": server_path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
        visible = iter([upload, model, sensitivity])
        data = [None if is_state else next(visible) for is_state in self.states]
        session = uuid.uuid4().hex
        self.http.post("gradio_api/queue/join", json={
            "data": data, "fn_index": self.dependency["id"], "session_hash": session, "event_data": None,
            "trigger_id": None}).raise_for_status()
        with self.http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    break
        if not message.get("success"):
            raise RuntimeError(f"/inspect failed: {message}")
        outputs = message["output"]["data"]
        for picture in outputs[:2]:  # the overlay and the mask, as the page loads them
            self.http.get(picture["url"]).raise_for_status()
        return {"score": outputs[2], "verdict": outputs[3]}


def run(url: str, images: list[str], requests: int, clients: int, via: str = "http") -> dict:
    if via == "http":
        pool_clients = [BrowserLikeClient(url) for _ in range(clients)]

        def call(client, path):
            return client.inspect(path, "bottle (bundled model)", 1.0)["score"]
    else:
        from gradio_client import Client, handle_file

        pool_clients = [Client(url, verbose=False) for _ in range(clients)]

        def call(client, path):
            return client.predict(handle_file(path), "bottle (bundled model)", 1.0, api_name="/inspect")[2]

    for client in pool_clients:  # warm-up: one request each, not timed
        call(client, images[0])

    def one(i: int) -> float:
        started = time.perf_counter()
        score = call(pool_clients[i % clients], images[i % len(images)])
        elapsed = time.perf_counter() - started
        if score is None:
            raise RuntimeError(f"request {i} got no score")
        return elapsed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        latencies = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": requests, "median_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * float(np.percentile(latencies, 95, method="nearest")), "max_ms": 1000 * max(latencies),
            "throughput": requests / wall}


def model_only_ms(images: list[str], threads: int, repeats: int = 20) -> float:
    """The demo's own work per request without Gradio: what the framework adds is the rest of the latency."""
    import torch

    from hlgfa_lite.demo import models, rendering, uploads

    torch.set_num_threads(threads)
    store = models.ModelStore()
    store.warm_up()
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        result = rendering.inspect_image(store.model, uploads.read_upload(images[i % len(images)]))
        rendering.render(store.model, result)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def time_fit(threads: int) -> None:
    """The "Fit" tab's work, each length on the bundled good images it is offered for: "quick" on 8 (the fewest
    the page does not warn about), "normal" on all 20; the seconds per image and per step the page's estimate uses."""
    import torch

    from hlgfa_lite.assets import sample_dir
    from hlgfa_lite.demo import models, visitor_fit
    from hlgfa_lite.training import planned_steps

    torch.set_num_threads(threads)
    store = models.ModelStore()
    paths = sorted((sample_dir() / "train" / "good").glob("*.png"))
    for length, images in (("quick", paths[:visitor_fit.FEW_FIT_IMAGES]), ("normal", paths)):
        steps = visitor_fit.fit_steps(length)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        part = visitor_fit.fit_part(images, store, steps=steps)
        seconds = time.perf_counter() - started
        visitor_fit.remove_fitted(part, store)
        planned = planned_steps(visitor_fit.fit_config(steps), len(images))
        print(f"fit_part {length}: {len(images)} images, {steps} steps ({planned} with the cross-fitted heads), "
              f"{threads} torch thread(s): {seconds:.1f} s in all, estimate {visitor_fit.fit_estimate(steps, len(images))}"
              f" (load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after)")
        print("   ", part.summary.splitlines()[2])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--run-dir", default=None, help="checkpoint to serve (default: the bundled one)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads per request in the server (default: the demo's own rule, "
                        "cores // concurrency)")
    parser.add_argument("--concurrency", type=positive_int, default=None,
                        help="inferences at a time in the server (default: the demo's own, app.CONCURRENCY)")
    parser.add_argument("--via", choices=["http", "gradio_client"], default="http",
                        help="http: the page's own requests (default); gradio_client: the Python client, which adds "
                        "its own polling delays")
    parser.add_argument("--fit", action="store_true", help="time an in-browser fit instead (no server)")
    args = parser.parse_args(argv)

    import torch

    from hlgfa_lite.demo import app  # the demo's settings (threads rule); does not start it
    from hlgfa_lite.demo import examples as demo_examples
    from hlgfa_lite.device import usable_cpus

    if args.fit:
        return time_fit(app.THREADS if args.threads is None else args.threads)
    examples = dict(demo_examples.example_images())
    load_before = os.getloadavg()
    images = [examples["good"], examples["broken large"]]
    port = free_port()
    concurrency = app.CONCURRENCY if args.concurrency is None else args.concurrency
    threads = app.threads_per_inference(concurrency) if args.threads is None else args.threads
    server = start_server(port, args.run_dir, threads, concurrency)
    try:
        rows = [run(f"http://127.0.0.1:{port}/", images, args.requests, n, args.via) for n in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"demo /inspect latency ({args.via}: upload, queue, inference, pictures, download), {args.requests} "
          f"requests per row, images "
          f"{', '.join(Path(p).parent.name + '/' + Path(p).name for p in images)} (512 px), "
          f"queue concurrency {concurrency}; {usable_cpus()} usable CPUs, torch {torch.__version__} with {threads} "
          f"thread(s) per request "
          f"in the server, {platform.processor() or platform.machine()}; load average before: "
          f"{' '.join(f'{x:.1f}' for x in load_before)}\n")
    model_ms = model_only_ms(images, threads)
    print("| clients | requests | median (ms) | p95 (ms) | max (ms) | throughput (req/s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['clients']} | {row['requests']} | {row['median_ms']:.0f} | {row['p95_ms']:.0f} | "
              f"{row['max_ms']:.0f} | {row['throughput']:.2f} |")
    print(f"\nof which the model and pictures alone (read_upload + predict + render, in-process, no server, "
          f"median of 20): {model_ms:.0f} ms")


if __name__ == "__main__":
    main()
