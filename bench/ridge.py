"""Ridge benchmark: braindiff's shared-factorization ridge vs the reference procedure, side by side.

NSD-shaped random data (full size: 8859 train x 15724 voxels, 982 test; targets VDVAE 91168, CLIP-vision
257 x 768, CLIP-text 77 x 768), every dimension but the token counts multiplied by ``--scale``.

- ours: ``RidgeRegressor`` (one factorization for all targets of a regressor; per-token targets are column blocks).
- reference: scikit-learn ``Ridge(alpha)`` as the reference code runs it: one fit for VDVAE, one fit per token for
  CLIP (257 + 77). The per-token loops are timed on ``--ref-tokens`` tokens and extrapolated linearly (each token
  is an independent fit of the same size), which the output says.
- sklearn-one-fit: a single scikit-learn ``Ridge`` on all CLIP-vision targets at once (what scikit-learn can do
  without per-token loops; shows why we wrote our own solver).

Prints seconds, peak extra resident memory (sampled every 5 ms) and ratios, checks that predictions agree, and the
full-size regressor file sizes (arithmetic). ``--write-full DIR`` also writes a random full-size VDVAE regressor and
times its load and first prediction.

    PYTHONPATH=. python bench/ridge.py --scale 0.2
    PYTHONPATH=. python bench/ridge.py --scale 1 --backend torch --device cuda     # on a GPU machine
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from braindiff_app.regression import (
    RidgeRegressor,
    load_regressor,
    low_rank_fidelity,
    preprocess_fmri,
    save_regressor,
    to_low_rank,
    zscore_stats,
)

FULL = {"n_train": 8859, "n_test": 982, "n_voxels": 15724, "vdvae": 91168, "clip_dim": 768}
TOKENS = {"clip_vision": 257, "clip_text": 77}
ALPHAS = {"vdvae": 50000.0, "clip_vision": 60000.0, "clip_text": 100000.0}


class PeakRSS:
    """Context manager: CPU seconds (all threads), wall seconds, and peak resident memory above the level at entry.

    Ratios use CPU seconds, which other processes on a shared machine do not inflate; wall seconds are printed
    beside them.
    """

    def __enter__(self):
        gc.collect()
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        self.t0, self.cpu0 = time.perf_counter(), sum(self.proc.cpu_times()[:2])
        return self

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.seconds = sum(self.proc.cpu_times()[:2]) - self.cpu0  # CPU seconds: robust on a shared machine
        self.running = False
        self.thread.join()
        self.extra_gb = (self.peak - self.base) / 1e9


def make_data(scale: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n, t, p = (max(8, round(FULL[k] * scale)) for k in ("n_train", "n_test", "n_voxels"))
    dim = max(4, round(FULL["clip_dim"] * scale))
    fmri = (rng.standard_normal((n + t, p), dtype=np.float32) * 300).round()
    signal = rng.standard_normal((p, 64), dtype=np.float32) / np.sqrt(p)

    def targets(shape):
        m = int(np.prod(shape))
        mix = rng.standard_normal((64, m), dtype=np.float32)
        y = (fmri / 300) @ signal @ mix + rng.standard_normal((n + t, m), dtype=np.float32)
        return y.reshape(n + t, *shape)
    data = {"fmri_train": fmri[:n], "fmri_test": fmri[n:]}
    for name, shape in (("vdvae", (max(8, round(FULL["vdvae"] * scale)),)), ("clip_vision", (257, dim)),
                        ("clip_text", (77, dim))):
        data[name] = targets(shape)[:n]
    return data


def reference_fit_predict(X, Xte, Y, alpha, tokens):
    """The reference procedure on ``tokens`` (indices; None = one fit on the whole target)."""
    from sklearn.linear_model import Ridge

    if tokens is None:
        return Ridge(alpha=alpha, fit_intercept=True).fit(X, Y).predict(Xte)
    return np.stack([Ridge(alpha=alpha, fit_intercept=True).fit(X, Y[:, i]).predict(Xte) for i in tokens], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.2, help="multiplies every size but the token counts")
    parser.add_argument("--ref-tokens", type=int, default=8, help="reference per-token fits timed (extrapolated)")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda")
    parser.add_argument("--n-targets-batch", type=int, default=4096)
    parser.add_argument("--rank", type=int, default=None, help="low-rank fidelity at this rank (default n/4)")
    parser.add_argument("--write-full", metavar="DIR", help="write + load a random full-size VDVAE regressor there")
    parser.add_argument("--cv-targets", type=int, default=2000, help="targets for the per-target alpha comparison "
                        "(0 skips it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass

    data = make_data(args.scale, args.seed)
    n, p = data["fmri_train"].shape
    print(f"scale {args.scale}: {n} train x {p} voxels, {len(data['fmri_test'])} test; targets "
          + ", ".join(f"{k} {data[k].shape[1:]}" for k in ALPHAS) + f"; backend {args.backend} {args.device or ''}")
    mean, scale = zscore_stats(data["fmri_train"])
    X, Xte = (preprocess_fmri(data[k], mean, scale) for k in ("fmri_train", "fmri_test"))

    rows, walls = [], []
    totals = {"ours": 0.0, "ref": 0.0}
    peaks = {"ours": 0.0, "ref": 0.0}
    fitted = {}
    for name, alpha in ALPHAS.items():
        Y = data[name]
        with PeakRSS() as ours:
            reg = RidgeRegressor(alpha, n_targets_batch=args.n_targets_batch, backend=args.backend,
                                 device=args.device, n_stats_rows=min(n, max(8, round(1024 * args.scale))))
            reg.fit(data["fmri_train"], Y)
            pred = reg.predict(data["fmri_test"])
        fitted[name] = reg
        if name == "vdvae":
            tokens, factor = None, 1.0
        else:
            tokens = np.linspace(0, Y.shape[1] - 1, min(args.ref_tokens, Y.shape[1])).round().astype(int)
            factor = Y.shape[1] / len(tokens)
        with PeakRSS() as ref:
            ref_pred = reference_fit_predict(X, Xte, Y, alpha, tokens)
        ref_seconds = ref.seconds * factor
        ours_part = pred if tokens is None else pred[:, tokens]
        err = np.linalg.norm(ours_part - ref_pred) / np.linalg.norm(ref_pred)
        note = "" if tokens is None else f"ref timed on {len(tokens)} of {Y.shape[1]} tokens, x{factor:.1f}"
        rows.append((name, ours.seconds, ours.extra_gb, ref_seconds, ref.extra_gb, note, err))
        walls.append((name, ours.wall, ref.wall * factor))
        totals["ours"] += ours.seconds
        totals["ref"] += ref_seconds
        peaks["ours"], peaks["ref"] = max(peaks["ours"], ours.extra_gb), max(peaks["ref"], ref.extra_gb)
        del reg, pred, ref_pred

    print(f"\n{'regressor':<12} {'ours cpu-s':>8} {'ours GB':>8} {'ref cpu-s':>9} {'ref GB':>7} {'speedup':>8}  "
          f"{'pred rel. diff':>14}  note")
    for name, s, gb, rs, rgb, note, err in rows:
        print(f"{name:<12} {s:8.2f} {gb:8.2f} {rs:9.2f} {rgb:7.2f} {rs / s:7.1f}x  {err:14.2e}  {note}")
    print(f"{'total':<12} {totals['ours']:8.2f} {peaks['ours']:8.2f} {totals['ref']:9.2f} {peaks['ref']:7.2f} "
          f"{totals['ref'] / totals['ours']:7.1f}x   (time ratio ref/ours; peak GB ratio ours/ref "
          f"{peaks['ours'] / max(peaks['ref'], 1e-9):.2f})")
    kept = sum(data[k].reshape(n, -1).shape[1] for k in TOKENS) * p * 8 / 1e9
    print(f"(ref GB is measured on the timed tokens only; the reference also keeps every token's weights in float64: "
          f"+{kept:.2f} GB at this scale)")
    print("wall seconds (ours / ref): " + ", ".join(f"{k} {a:.2f} / {b:.2f}" for k, a, b in walls))

    # scikit-learn on all CLIP-vision targets at once (no per-token loop): same predictions, its own solver.
    from sklearn.linear_model import Ridge

    Yv = data["clip_vision"].reshape(n, -1)
    with PeakRSS() as sk:
        Ridge(alpha=ALPHAS["clip_vision"]).fit(X, Yv).predict(Xte)
    vision = rows[1]
    print(f"\nclip_vision, scikit-learn Ridge one fit on all {Yv.shape[1]} targets: {sk.seconds:.2f} cpu-s, "
          f"{sk.extra_gb:.2f} GB extra; ours {vision[1]:.2f} cpu-s, {vision[2]:.2f} GB "
          f"({sk.seconds / vision[1]:.1f}x faster)")

    # Per-target alpha selection: ours (closed-form leave-one-out) vs scikit-learn RidgeCV vs himalaya.
    if args.cv_targets:
        from sklearn.linear_model import RidgeCV

        alphas = np.logspace(3, 6, 8)
        Yc = np.ascontiguousarray(data["vdvae"][:, :args.cv_targets])
        with PeakRSS() as ours_cv:
            cv = RidgeRegressor(alphas, n_stats_rows=None).fit(data["fmri_train"], Yc)
        with PeakRSS() as sk_cv:
            sk = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Yc)
        agree = float(np.mean(cv.alpha_ == sk.alpha_))
        line = (f"\nper-target alpha ({len(alphas)} alphas, {Yc.shape[1]} targets): ours {ours_cv.seconds:.2f} cpu-s "
                f"{ours_cv.extra_gb:.2f} GB; sklearn RidgeCV {sk_cv.seconds:.2f} cpu-s {sk_cv.extra_gb:.2f} GB "
                f"(same alpha for {agree:.0%} of targets)")
        try:
            from himalaya.kernel_ridge import KernelRidgeCV

            with PeakRSS() as hi_cv:
                KernelRidgeCV(alphas=alphas, kernel="linear").fit(X, Yc)
            line += f"; himalaya KernelRidgeCV (5-fold) {hi_cv.seconds:.2f} cpu-s {hi_cv.extra_gb:.2f} GB"
        except ImportError:
            line += "; himalaya not installed"
        print(line)

    # Low-rank fidelity (random data has a flat spectrum: a pessimistic case).
    rank = args.rank or max(1, n // 4)
    reg = fitted["clip_vision"]
    with PeakRSS() as lr:
        low = to_low_rank(reg, min(rank, *reg.weights_.shape))
    fid = low_rank_fidelity(reg, low, data["fmri_test"])
    print(f"low-rank clip_vision rank {rank}: relative error {fid['relative_error']:.3f}, mean r "
          f"{fid['mean_correlation']:.3f} ({lr.seconds:.1f} s to factor)")

    # Full-size on-disk sizes (float32).
    pv = FULL["n_voxels"]
    sizes = {"vdvae": FULL["vdvae"], "clip_vision": 257 * 768, "clip_text": 77 * 768}
    dense = {k: pv * m * 4 / 1e9 for k, m in sizes.items()}
    print("\nfull-size subject (15724 voxels), float32 on disk: dense "
          + ", ".join(f"{k} {v:.1f} GB" for k, v in dense.items()) + f", total {sum(dense.values()):.1f} GB")
    for r in (256, 1024, 4096):
        low_gb = {k: r * (pv + m) * 4 / 1e9 for k, m in sizes.items()}
        print(f"  rank {r:>4}: " + ", ".join(f"{k} {v:.2f} GB" for k, v in low_gb.items())
              + f", total {sum(low_gb.values()):.2f} GB")
    print(f"  the same weights in float64 (as the reference keeps them): {2 * sum(dense.values()):.1f} GB")

    if args.write_full:
        folder = Path(args.write_full)
        folder.mkdir(parents=True, exist_ok=True)
        big = RidgeRegressor(50000.0, n_targets_batch=8192)
        m = FULL["vdvae"]
        big.fmri_mean_, big.fmri_scale_ = np.zeros(pv), np.ones(pv)
        path = folder / "vdvae_full.safetensors"
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".npy") as tmp:
            w = np.lib.format.open_memmap(tmp.name, mode="w+", dtype=np.float32, shape=(pv, m))
            for s in range(0, pv, 1024):
                w[s:s + 1024] = np.random.default_rng(s).standard_normal((min(1024, pv - s), m), dtype=np.float32)
            big.weights_ = w
            for k in ("intercept", "target_mean", "target_std", "pred_mean", "pred_std", "pred_norm"):
                setattr(big, f"{k}_", np.ones(m, np.float32))
            big.alpha_, big.target_shape_ = np.full(m, 50000.0), (m,)
            t0 = time.perf_counter()
            save_regressor(big, path)
            write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = load_regressor(path, n_targets_batch=8192)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded.predict(np.zeros((1, pv), np.float32))
        first_s = time.perf_counter() - t0
        print(f"\nfull-size VDVAE regressor {path.stat().st_size / 1e9:.1f} GB: write {write_s:.1f} s, load "
              f"(memory-mapped) {load_s * 1000:.1f} ms, first prediction (reads every page) {first_s:.1f} s")
        path.unlink()


if __name__ == "__main__":
    main()
