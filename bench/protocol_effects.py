"""The effect of each reference-protocol item on the demo tier's Table 1 (docs/reproduce.md).

For one prepared demo subject, runs the braindiff protocol, then the braindiff protocol with one item switched to
the reference's choice (items 1-6; item 7 is NSD's session list and item 8 the caption file, neither of which the
simulated subject has), then the whole reference protocol: features are re-extracted and regressors refitted only
for the targets an item touches (the others are shared with the baseline run), every test trial is reconstructed
(no ablations) and scored (PixCorr, SSIM, SSIM-ref, demo-CLIP 2-way identification). Prints one row per run and
its difference from the braindiff row.

Needs a built demo workspace (`braindiff demo build`: prepared subjects). Takes about 1-2 min per row on 2 cores.

Usage: python bench/protocol_effects.py --home ~/.braindiff [--subject 1] [--work DIR] [--limit N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from braindiff_app.config import load_settings  # noqa: E402
from braindiff_app.protocol import PROTOCOLS  # noqa: E402

#: Items and the Protocol fields each switches to the reference's value; which stages they touch.
ITEMS = {
    "1 VDVAE posterior samples": (("vdvae_latents",), {"vdvae"}),
    "2 VDVAE sampled, truncated pixels": (("vdvae_pixels", "vdvae_quantise"), set()),
    "3 VDVAE uniform noise rescaled": (("vdvae_uniform",), set()),
    "4 VDVAE input PIL bilinear": (("vdvae_resize",), {"vdvae"}),
    "5 CLIP input and unconditional image": (("clip_resize", "clip_uncond"), {"clip"}),
    "6 noise at timestep 741 (LDM)": (("noise_timestep",), set()),
}


def run(source, work: Path, subject: str, protocol, extract: set[str], baseline_home: Path | None,
        limit: int | None, backbones) -> dict[str, float]:
    """Extract/fit what ``extract`` names (else reuse the baseline's files), reconstruct, evaluate; the means."""
    from braindiff_app.bundles import open_bundle
    from braindiff_app.evaluation.report import evaluate_bundle
    from braindiff_app.extraction import extract_clip_features, extract_vdvae_features
    from braindiff_app.reconstruct import reconstruct_subject
    from braindiff_app.regression.subject import fit_subject
    from braindiff_app.stage2 import Stage2Settings

    settings = load_settings(home=work, tier="demo", nsd_root=source.nsd_dir)
    prepared, features = settings.subject_dir("prepared", subject), settings.subject_dir("features", subject)
    regressors = settings.subject_dir("regressors", subject)
    if not prepared.exists():
        prepared.parent.mkdir(parents=True, exist_ok=True)
        prepared.symlink_to(source.subject_dir("prepared", subject), target_is_directory=True)
    if baseline_home is not None:  # share the baseline's features and regressors of the untouched targets
        base = load_settings(home=baseline_home, tier="demo")
        shutil.copytree(base.subject_dir("features", subject), features, dirs_exist_ok=True)
        regressors.mkdir(parents=True, exist_ok=True)
        for name in {"vdvae", "clip"} - extract:
            for path in base.subject_dir("regressors", subject).glob(f"{name}*.safetensors"):
                shutil.copy(path, regressors / path.name)
    targets = []
    if baseline_home is None or "vdvae" in extract:
        extract_vdvae_features(settings, subject, protocol=protocol, overwrite=True, progress=False)
        targets.append("vdvae")
    if baseline_home is None or "clip" in extract:
        extract_clip_features(settings, subject, protocol=protocol, overwrite=True, progress=False)
        targets += ["clip_vision", "clip_text"]
    fit_subject(prepared, features, regressors, targets=tuple(targets), overwrite=True)
    path = reconstruct_subject(settings, subject, limit=limit, out=work / "bundles", protocol=protocol,
                               stage2=Stage2Settings.for_tier("demo"), overwrite=True, progress=False)
    scores = evaluate_bundle(open_bundle(path), backbones, kinds=["final"])["final"]
    return {m: float(sum(v) / len(v)) for m, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a built demo workspace (BRAINDIFF_HOME of `demo build`)")
    parser.add_argument("--subject", default="1")
    parser.add_argument("--work", help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--limit", type=int, help="only the first N test trials")
    args = parser.parse_args()

    from braindiff_app.config import set_cpu_threads
    from braindiff_app.evaluation.backbones import backbones_from_settings

    set_cpu_threads(None)
    source = load_settings(home=args.home, tier="demo")
    work = Path(args.work or tempfile.mkdtemp(prefix="braindiff-protocols-"))
    backbones = backbones_from_settings(source, ["CLIP"])  # the demo's small CLIP (demo-CLIP); pixel metrics too
    braindiff, reference = PROTOCOLS["braindiff"], PROTOCOLS["reference"]
    runs = [("braindiff (default)", braindiff, set())]
    for label, (fields, stages) in ITEMS.items():
        runs.append((label, replace(braindiff, **{f: getattr(reference, f) for f in fields}), stages))
    runs.append(("reference (all items)", reference, {"vdvae", "clip"}))
    rows = []
    for i, (label, protocol, stages) in enumerate(runs):
        start = time.perf_counter()
        means = run(source, work / f"run{i}", args.subject, protocol, stages, None if i == 0 else work / "run0",
                    args.limit, backbones)
        rows.append((label, means))
        print(f"{label}: {means} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    names = list(rows[0][1])
    print(f"Subject {args.subject}, {'all' if args.limit is None else args.limit} test trials, demo tier "
          f"(`python bench/protocol_effects.py --home {args.home} --subject {args.subject}`):\n")
    print("| run | " + " | ".join(names) + " | change from braindiff |")
    print("|---|" + "---:|" * len(names) + "---|")
    base = rows[0][1]
    for label, means in rows:
        change = ", ".join(f"{m} {means[m] - base[m]:+.3f}" for m in names) if means is not base else "-"
        print(f"| {label} | " + " | ".join(f"{means[m]:.3f}" for m in names) + f" | {change} |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
