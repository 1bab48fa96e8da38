"""ROI-optimal images on the demo tier: do category regions' images show their category?

A content judge is trained on the stimulus world itself: a logistic-regression probe per category on the demo
CLIP's class-token embedding of rendered scenes with known content (held-out accuracy printed). Each region's
ROI-optimal images (every subject with regressors, several seeds) are then judged; the table gives, per region,
the fraction of images in which the judge finds each category, side by side with the other regions' rates (the
baseline), plus the images' high-spatial-frequency energy and how far from the centre their contrast lies
(early visual areas are expected to give finer, more peripheral texture).

Usage: python bench/roi_categories.py [--home DIR] [--seeds 4] [--probe-images 3000]
(needs a built demo workspace: `braindiff demo build`, or the committed assets/demo/home).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REGIONS = ("V1", "V2", "V3", "faces", "places", "bodies")
JUDGED = ("faces", "bodies", "places")


def embed(image_encoder, images: np.ndarray) -> np.ndarray:
    from braindiff_app.models.clip_features import clip_vision_features

    return clip_vision_features(image_encoder, images, batch_size=64)[:, 0]  # class token, unit norm


def texture_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean high-frequency energy fraction and contrast eccentricity (0 centre, 1 corner) of uint8 images."""
    gray = images.astype(np.float32).mean(-1) / 255.0
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean((1, 2), keepdims=True)), axes=(1, 2))) ** 2
    h, w = gray.shape[1:]
    y, x = np.mgrid[0:h, 0:w]
    radius = np.hypot(y - h / 2, x - w / 2) / (min(h, w) / 2)
    high = (spectrum * (radius > 0.5)).sum((1, 2)) / spectrum.sum((1, 2))
    contrast = np.abs(gray - gray.mean((1, 2), keepdims=True))
    ecc = (contrast * radius).sum((1, 2)) / contrast.sum((1, 2)) / np.sqrt(2)
    return float(high.mean()), float(ecc.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", help="demo workspace home (default: BRAINDIFF_HOME, else the committed one)")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--probe-images", type=int, default=3000)
    args = parser.parse_args()

    import torch
    from sklearn.linear_model import LogisticRegression

    from braindiff_app.config import load_settings
    from braindiff_app.data.stimuli import CATEGORIES, content_labels, render_scenes
    from braindiff_app.demo_export import roi_settings
    from braindiff_app.roi import Recipe, load_roi_models

    torch.set_num_threads(1)
    settings, committed = roi_settings(load_settings(home=args.home, tier="demo"))
    models = load_roi_models(settings)
    encoder = models.pipeline.image_encoder
    print(f"subjects {models.subjects} ({'committed low-rank' if committed else 'workspace'} regressors)")

    images, scenes, _ = render_scenes(args.probe_images, seed=7, size=64)
    labels = content_labels(scenes)
    features = embed(encoder, images)
    split = int(0.8 * len(images))
    probes = {}
    for category in JUDGED:
        y = labels[:, CATEGORIES.index(category)]
        probe = LogisticRegression(max_iter=2000, C=10.0).fit(features[:split], y[:split])
        accuracy = probe.score(features[split:], y[split:])
        probes[category] = probe
        print(f"judge {category:7s}: held-out accuracy {accuracy:.2f} (base rate {y[split:].mean():.2f})")

    rows = {}
    for region in REGIONS:
        finals = []
        for subject in models.subjects:
            if region not in models.atlases[subject].regions:
                continue
            for seed in range(args.seeds):
                finals.append(models.generate(Recipe(subject=subject, regions={region: 1.0}, seed=seed)).final[0])
        finals = np.stack(finals)
        emb = embed(encoder, finals)
        rows[region] = ({c: float(probes[c].predict(emb).mean()) for c in JUDGED}, *texture_stats(finals),
                        len(finals))

    print(f"\n{'region':8s} " + " ".join(f"{c:>8s}" for c in JUDGED) + "  high-freq  contrast-ecc  n")
    for region, (rates, high, ecc, n) in rows.items():
        print(f"{region:8s} " + " ".join(f"{rates[c]:8.2f}" for c in JUDGED) + f"  {high:9.3f}  {ecc:12.3f}  {n}")
    print("\nhit rate of a category region vs the mean of the other regions (same judge):")
    for category in JUDGED:
        own = rows[category][0][category]
        others = np.mean([rows[r][0][category] for r in REGIONS if r != category])
        print(f"  {category:7s}: {own:.2f} vs {others:.2f} ({own / max(others, 1e-9):.1f}x)")


if __name__ == "__main__":
    main()
