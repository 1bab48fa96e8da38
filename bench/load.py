"""Load: simulated users (gradio_client) browse trials and generate ROI images on the demo tier.

Starts the app on localhost over the demo bundles, then runs ``--users`` threads for ``--seconds``: each user
switches trial a few times, then asks the ROI studio for an image, and repeats. Prints the error count, the latency
percentiles of each action and the server process's peak memory (resident set size), beside the single-user
latency measured first in the same run (the baseline).

Usage: python bench/load.py [--users 8] [--seconds 60] [--port 7898]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROI_REGIONS = {"V1": 1.0, "faces": 1.0}


def percentiles(values: list[float]) -> str:
    if not values:
        return "no calls"
    p50, p90, p99 = np.percentile(np.asarray(values) * 1e3, [50, 90, 99])
    return f"n={len(values):4d}  p50 {p50:7.0f} ms  p90 {p90:7.0f} ms  p99 {p99:7.0f} ms"


def user_session(url: str, bundle: str, n_trials: int, region_names: list[str], deadline: float, seed: int,
                 results: dict[str, list[float]], errors: list[str], lock: threading.Lock) -> None:
    from gradio_client import Client

    rng = np.random.default_rng(seed)
    client = Client(url, verbose=False)
    weights = [ROI_REGIONS.get(r, 0.0) for r in region_names]
    while time.time() < deadline:
        for _ in range(3):
            start = time.perf_counter()
            try:
                client.predict(bundle, int(rng.integers(n_trials)), api_name="/show_trial")
                with lock:
                    results["browse"].append(time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"browse: {exc}")
        start = time.perf_counter()
        try:
            client.predict("1", int(rng.integers(1000)), None, 1, *weights, api_name="/roi_generate")
            with lock:
                results["roi_generate"].append(time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001
            with lock:
                errors.append(f"roi_generate: {exc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--port", type=int, default=7898)
    args = parser.parse_args()

    import psutil

    from braindiff_app.config import load_settings
    from braindiff_app.data.atlas import ALL_REGIONS
    from braindiff_app.ui import build_app, launch_app

    settings = load_settings(tier="demo")
    app, state, _ = build_app(settings)
    bundle = state.default_bundle
    if bundle is None:
        sys.exit("no demo bundle found: run `braindiff demo build` first")
    n_trials = state.bundle(bundle).n_trials
    launch_app(app, settings, port=args.port, block=False, quiet=True)
    url = f"http://127.0.0.1:{args.port}/"
    process = psutil.Process()
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def watch_memory() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.2)

    threading.Thread(target=watch_memory, daemon=True).start()
    lock = threading.Lock()
    try:
        single: dict[str, list[float]] = {"browse": [], "roi_generate": []}
        errors: list[str] = []
        user_session(url, bundle, n_trials, list(ALL_REGIONS), time.time() + 1, 0, single, errors, lock)
        print(f"baseline, 1 user:  browse {percentiles(single['browse'])}")
        print(f"                   roi    {percentiles(single['roi_generate'])}")
        results: dict[str, list[float]] = {"browse": [], "roi_generate": []}
        deadline = time.time() + args.seconds
        threads = [threading.Thread(target=user_session, args=(url, bundle, n_trials, list(ALL_REGIONS), deadline,
                                                               i + 1, results, errors, lock))
                   for i in range(args.users)]
        start_rss = process.memory_info().rss
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        stop.set()
        app.close()
    print(f"{args.users} users for {args.seconds:.0f} s: errors {len(errors)}")
    for error in errors[:5]:
        print(f"  {error[:200]}")
    print(f"  browse       {percentiles(results['browse'])}")
    print(f"  roi_generate {percentiles(results['roi_generate'])}")
    if single["browse"] and results["browse"]:
        ratio = np.median(results["browse"]) / np.median(single["browse"])
        print(f"  browse p50 under load / single user: {ratio:.1f}x")
    print(f"server memory: {start_rss / 2**20:.0f} MB before the users, peak {peak[0] / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
