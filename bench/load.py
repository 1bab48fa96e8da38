"""Load: simulated users (gradio_client) browse trials and generate ROI images on the demo tier.

Starts the app on localhost over the demo bundles, as ``braindiff app`` does (its torch threads included), then for
each count of ``--users`` runs that many threads for ``--seconds``, ``--rounds`` times: each user switches trial a
few times, then asks the ROI studio for an image, and repeats. Like a browser, a user fetches every image an answer
names (gradio_client's own downloads cost the client 3x the server's CPU per Browse call, and the client shares the
machine). Prints the error count, the latency percentiles of each action, the server process's memory (resident
set size) after each round and its peak, beside the single-user latency measured first in the same run (the
baseline). The app runs in a process of its own, so the memory is the server's alone; the CPU the users themselves
took is printed, and the machine's load average: latencies only compare within one run. Exits non-zero when a call
failed or the server's memory grew more than ``--max-memory-growth`` over the last round (unbounded memory; the
first rounds also warm up: caches fill, larger batches allocate).

Usage: python bench/load.py [--users 1 8 16] [--seconds 60] [--rounds 1] [--baseline-seconds 15] [--port 7898]
       [--threads N] [--max-memory-growth 0.05]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.data.atlas import ALL_REGIONS  # noqa: E402 - after the path insert

ROI_REGIONS = {"V1": 1.0, "faces": 1.0}


def percentiles(values: list[float]) -> str:
    if not values:
        return "no calls"
    p50, p90, p99 = np.percentile(np.asarray(values) * 1e3, [50, 90, 99])
    return f"n={len(values):4d}  p50 {p50:7.0f} ms  p90 {p90:7.0f} ms  p99 {p99:7.0f} ms"


def user_session(url: str, bundle: str, n_trials: int, region_names: list[str], deadline: float, seed: int,
                 results: dict[str, list[float]], errors: list[str], lock: threading.Lock,
                 candidates: int = 1) -> None:
    """One simulated user: cycles of 3 trial views and 1 ROI generate until ``deadline`` (at least one cycle)."""
    from gradio_client import Client

    rng = np.random.default_rng(seed)
    client = Client(url, verbose=False, download_files=False)
    weights = [ROI_REGIONS.get(r, 0.0) for r in region_names]
    while True:  # whole cycles, at least one
        for _ in range(3):
            start = time.perf_counter()
            try:
                fetch_images(client.predict(bundle, int(rng.integers(n_trials)), api_name="/show_trial"))
                with lock:
                    results["browse"].append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"browse: {exc}")
        start = time.perf_counter()
        try:
            fetch_images(client.predict("1", int(rng.integers(1000)), None, 1, *weights, candidates,
                                        api_name="/roi_generate"))
            with lock:
                results["roi_generate"].append(time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(f"roi_generate: {exc}")
        if time.time() >= deadline:
            break


def fetch_images(answer) -> int:
    """GET every file an answer names (a browser shows them); returns the bytes read."""
    if isinstance(answer, dict):
        if isinstance(answer.get("url"), str) and answer["url"].startswith("http"):
            with urllib.request.urlopen(answer["url"], timeout=60) as response:
                return len(response.read())
        return sum(fetch_images(v) for v in answer.values())
    if isinstance(answer, (list, tuple)):
        return sum(fetch_images(v) for v in answer)
    return 0


def serve(port: int, threads: int | None) -> None:
    """``braindiff app`` on the demo tier, in its own process (so its memory is measured alone), until terminated."""
    from braindiff_app.cli import main

    main(["app", "--tier", "demo", "--port", str(port), *(["--threads", str(threads)] if threads else [])])


def wait_for_server(url: str, server: multiprocessing.Process, timeout: float = 300) -> None:
    """Return once ``url`` answers; SystemExit when the server process dies or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not server.is_alive():
            sys.exit(f"the app process exited with code {server.exitcode} before answering")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"the app did not answer at {url} within {timeout:.0f} s")


def run_users(url: str, bundle: str, n_trials: int, users: int, seconds: float,
              errors: list[str], candidates: int = 1) -> dict[str, list[float]]:
    """``users`` threads of :func:`user_session` for ``seconds``; latencies by action (errors appended)."""
    results: dict[str, list[float]] = {"browse": [], "roi_generate": []}
    lock = threading.Lock()
    deadline = time.time() + seconds
    threads = [threading.Thread(target=user_session, args=(url, bundle, n_trials, list(ALL_REGIONS), deadline,
                                                           i, results, errors, lock, candidates))
               for i in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="+", default=[8], help="user counts, run in turn (e.g. 1 8 16)")
    parser.add_argument("--seconds", type=float, default=60, help="length of one round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per user count (memory: warm-up or leak)")
    parser.add_argument("--baseline-seconds", type=float, default=15, help="single-user run before the load")
    parser.add_argument("--port", type=int, default=7898)
    parser.add_argument("--threads", type=int, help="the app's --threads (default: the app's own choice)")
    parser.add_argument("--candidates", type=int, default=1,
                        help="best-of-N candidates per ROI generate (default 1: one image, as the issue measured; "
                        "the studio's own default is 4 where encoders exist)")
    parser.add_argument("--max-memory-growth", type=float, default=0.05,
                        help="fail when the server's memory grows more than this fraction over the last round")
    args = parser.parse_args()

    import psutil

    from braindiff_app.config import load_settings
    from braindiff_app.ui.state import AppState

    state = AppState(load_settings(tier="demo"))
    bundle = state.default_bundle
    if bundle is None:
        sys.exit("no demo bundle found: run `braindiff demo build` first")
    n_trials = state.bundle(bundle).n_trials
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(args.port, args.threads), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{args.port}/"
    rounds: list[tuple] = []  # (users, round, latencies, errors, RSS before, RSS after, server CPU, users' CPU)
    try:
        wait_for_server(url, server)
        process = psutil.Process(server.pid)
        peak = [process.memory_info().rss]
        stop = threading.Event()

        def watch_memory() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.2)

        threading.Thread(target=watch_memory, daemon=True).start()
        errors: list[str] = []
        start = time.perf_counter()
        run_users(url, bundle, n_trials, 1, 0, errors, args.candidates)  # one browse + one ROI call: the models load
        first_call = time.perf_counter() - start
        single = run_users(url, bundle, n_trials, 1, args.baseline_seconds, errors, args.candidates)
        baseline_rss = process.memory_info().rss
        for users in args.users:
            for r in range(args.rounds):
                round_errors: list[str] = []
                rss, server_cpu, own_cpu = process.memory_info().rss, _cpu(process), time.process_time()
                results = run_users(url, bundle, n_trials, users, args.seconds, round_errors, args.candidates)
                rounds.append((users, r + 1, results, round_errors, rss, process.memory_info().rss,
                               _cpu(process) - server_cpu, time.process_time() - own_cpu))
        threads = process.num_threads()
        stop.set()
    finally:
        os.kill(server.pid, signal.SIGINT)  # gradio closes its server on KeyboardInterrupt
        server.join(30)
        if server.is_alive():
            server.terminate()
    print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores; app --threads {args.threads or 'default'}; server threads at the end {threads}")
    print(f"warm-up, 1 user, 3 browse + 1 ROI call (models load on the first): {first_call:.1f} s")
    print(f"baseline, 1 user for {args.baseline_seconds:.0f} s:")
    for action, values in single.items():
        print(f"  {action:12s} {percentiles(values)}")
    print(f"server memory (RSS) after the baseline: {baseline_rss / 2**20:.0f} MB")
    failures = []
    for users, r, results, round_errors, before, after, server_cpu, users_cpu in rounds:
        print(f"{users} user(s), round {r} of {args.seconds:.0f} s: errors {len(round_errors)}; CPU: server "
              f"{server_cpu:.0f} s, simulated users {users_cpu:.0f} s; server memory {before / 2**20:.0f} -> "
              f"{after / 2**20:.0f} MB ({(after - before) / before:+.1%})")
        for error in round_errors[:5]:
            print(f"  {error[:200]}")
        for action, values in results.items():
            print(f"  {action:12s} {percentiles(values)}")
            if single[action] and values:
                print(f"  {'':12s} p50 under load / single user: {np.median(values) / np.median(single[action]):.1f}x")
        if round_errors:
            failures.append(f"{len(round_errors)} failed calls with {users} users")
    print(f"server memory peak: {peak[0] / 2**20:.0f} MB")
    if rounds:
        users, _, _, _, before, after, _, _ = rounds[-1]
        if (after - before) / before > args.max_memory_growth:
            failures.append(f"server memory grew {(after - before) / before:.0%} over the last round "
                            f"({users} users; more than --max-memory-growth {args.max_memory_growth:.0%})")
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


def _cpu(process) -> float:
    """CPU seconds (user + system) ``process`` has used, its threads included."""
    times = process.cpu_times()
    return times.user + times.system


if __name__ == "__main__":
    main()
