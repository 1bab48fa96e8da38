"""The stimulus world's own content detector: a small CNN that says which categories an image shows.

The demo tier's stimuli are procedural scenes with known content (:mod:`braindiff_app.demo.stimuli`), so a
judge can be trained on the world itself: a few-10k-parameter CNN with one sigmoid output per category of
:data:`~braindiff_app.demo.stimuli.CATEGORIES` (multi-label: a scene may hold faces and places at once). It
judges generated images (ROI-optimal images, reconstructions), which are blurry and smeared, so training
images are degraded on the fly (:func:`degrade_images`: blur, pixelation, noise, colour jitter, flips) and the
caller may add copies passed through the demo models (VAE or VDVAE round trips, see :func:`judge_training_set`).

Every image is resized to the judge's side (``size`` pixels, area averaging) before it is judged; training is
seeded (model initialisation, batch order and augmentation draw from one seed) and runs on the CPU in minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from braindiff_app.demo.stimuli import CATEGORIES, check_image_size, content_labels, render_scenes

__all__ = [
    "ContentJudge",
    "degrade_images",
    "judge_training_set",
    "train_content_judge",
    "predict_content",
    "content_scores",
]


class ContentJudge(nn.Module):
    """A small CNN: (n_images, 3, size, size) in [0, 1] -> (n_images, n_categories) logits.

    Three stages of two 3x3 convolutions (``width``, 2 ``width``, 4 ``width`` channels, batch norm, ReLU), each
    followed by 2x2 max pooling, then global average and max pooling and one linear layer. About 73k parameters
    at ``width=16``.

    Parameters
    ----------
    size : int, default 32
        Side (pixels) of the images the judge sees; inputs of other sides are resized by :func:`predict_content`.
    width : int, default 16
        Channels of the first stage.
    categories : sequence of str, default CATEGORIES
        Output names, one logit each.
    """

    def __init__(self, size: int = 32, width: int = 16, categories: Sequence[str] = CATEGORIES) -> None:
        super().__init__()
        check_image_size(size)
        self.size = int(size)
        self.categories = tuple(categories)
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, 2 * width, 4 * width):
            for _ in range(2):
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * channels, len(self.categories))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features((x - 0.5) / 0.25)  # (n, 4 width, size / 8, size / 8)
        return self.head(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))


def _check_images(images: np.ndarray, name: str = "images") -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of shape (n_images, height, width, 3), got "
                        f"{type(images).__name__}.")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (n_images, height, width, 3), got {images.shape}.")
    if images.dtype != np.uint8:
        raise TypeError(f"{name}: expected uint8 pixels (0-255), got {images.dtype}; convert with "
                        "np.clip(x, 0, 255).astype(np.uint8).")
    return images


def _to_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (n, h, w, 3) -> float (n, 3, size, size) in [0, 1] (area average down, bilinear up)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    mode = "area" if min(x.shape[-2:]) >= size else "bilinear"
    return F.interpolate(x, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of x (n, 3, s, s) with its own Gaussian sigma (n,) in pixels (separable, reflect padding)."""
    radius = 4
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 2 radius + 1)
    n, c, h, w = x.shape
    flat = x.reshape(1, n * c, h, w)
    weights = kernel.repeat_interleave(c, 0)  # (n c, 2 radius + 1)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), weights[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), weights[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def degrade_images(x: torch.Tensor, generator: torch.Generator, strength: float = 1.0) -> torch.Tensor:
    """Randomly degrade a batch the way generated images are degraded (the judge's training augmentation).

    Per image, each with probability about one half: horizontal flip, Gaussian blur (sigma up to
    ``1.5 * strength`` pixels), pixelation (down to 1/4 .. 1/2 of the side and bilinear back up), colour jitter
    (brightness, contrast, saturation up to +-30 %), Gaussian pixel noise (std up to ``0.06 * strength``).

    Parameters
    ----------
    x : tensor of shape (n_images, 3, size, size)
        Pixels in [0, 1].
    generator : torch.Generator
        Source of every random draw.
    strength : float, default 1.0
        Scale of blur and noise (0 keeps flips and colour jitter only).

    Returns
    -------
    tensor of shape (n_images, 3, size, size), in [0, 1]
    """
    n, _, h, w = x.shape

    def uniform(lo: float, hi: float, shape=(n,)) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator)

    def coin(p: float = 0.5) -> torch.Tensor:
        return torch.rand(n, generator=generator) < p

    x = torch.where(coin()[:, None, None, None], x.flip(-1), x)
    x = torch.where(coin()[:, None, None, None], _gaussian_blur(x, uniform(0.3, 0.3 + 1.2 * strength)), x)
    pixelate = coin(0.4)
    if pixelate.any():
        small = int(torch.randint(max(4, h // 4), max(5, h // 2 + 1), (1,), generator=generator))
        coarse = F.interpolate(F.interpolate(x, size=(small, small), mode="area"), size=(h, w), mode="bilinear",
                               align_corners=False)
        x = torch.where(pixelate[:, None, None, None], coarse, x)
    gray = x.mean(1, keepdim=True)
    x = gray + (x - gray) * uniform(0.7, 1.3)[:, None, None, None]  # saturation
    mean = x.mean((1, 2, 3), keepdim=True)
    x = mean + (x - mean) * uniform(0.7, 1.3)[:, None, None, None]  # contrast
    x = x * uniform(0.75, 1.25)[:, None, None, None]  # brightness
    noise = torch.randn(x.shape, generator=generator) * (0.06 * strength * torch.rand(n, generator=generator))[
        :, None, None, None]
    return (x + noise).clamp(0.0, 1.0)


def judge_training_set(n_scenes: int, seed: int = 1, size: int = 64, start: int = 0,
                       degraders: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rendered scenes with their content labels, a share of them passed through caller-given degraders.

    Parameters
    ----------
    n_scenes : int
        Scenes ``start .. start + n_scenes - 1`` of the world ``seed``.
    seed : int, default 1
        World seed. The demo's simulated experiment shows the scenes of world 0: train the judge on another
        world so the images it will judge are new to it.
    size : int, default 64
        Side of the rendered images, in pixels.
    start : int, default 0
        First scene index (held-out sets: a disjoint range or another seed).
    degraders : mapping of str to callable, optional
        Name -> function taking uint8 images (n, size, size, 3) and returning uint8 images (n, h, w, 3) of one side
        (e.g. a VAE round trip of the demo's diffusion model). The scenes are split into ``1 + len(degraders)``
        equal interleaved shares: the first share stays clean, share ``k`` goes through degrader ``k``. Outputs
        are resized back to ``size``.

    Returns
    -------
    images : array of shape (n_images, size, size, 3), uint8
    labels : array of shape (n_images, n_categories), bool
        :func:`~braindiff_app.demo.stimuli.content_labels` (column order of CATEGORIES).
    source : array of shape (n_images,), int
        0 for clean images, ``k`` for images from the k-th degrader (in the mapping's order).
    """
    images, scenes, _ = render_scenes(int(n_scenes), seed=seed, size=size, start=start)
    labels = content_labels(scenes)
    source = np.zeros(len(images), dtype=np.int64)
    for k, (name, degrade) in enumerate((degraders or {}).items(), start=1):
        rows = np.arange(k, len(images), 1 + len(degraders))
        if not len(rows):
            continue
        out = _check_images(np.asarray(degrade(images[rows])), f"degraders[{name!r}] output")
        if len(out) != len(rows):
            raise ValueError(f"degraders[{name!r}]: expected {len(rows)} images back, got {len(out)}.")
        if out.shape[1:3] != (size, size):
            out = (_to_tensor(out, size) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        images[rows] = out
        source[rows] = k
    return images, labels, source


def train_content_judge(images: np.ndarray, labels: np.ndarray, size: int = 32, width: int = 16, epochs: int = 12,
                        batch_size: int = 64, learning_rate: float = 3e-3, seed: int = 0, augment: float = 1.0,
                        progress: bool = False) -> ContentJudge:
    """Train a :class:`ContentJudge` on labelled images (binary cross-entropy per category, Adam, cosine decay).

    Parameters
    ----------
    images : array of shape (n_images, height, width, 3), uint8
        Training images (e.g. from :func:`judge_training_set`); resized to ``size``.
    labels : array of shape (n_images, n_categories), bool
        Which categories each image shows (columns in the order of CATEGORIES).
    size : int, default 32
        Side of the judge's input, in pixels.
    width : int, default 16
        Channels of the judge's first stage.
    epochs : int, default 12
        Passes over the images.
    batch_size : int, default 64
    learning_rate : float, default 3e-3
        Adam's initial step, decayed to 0 along a cosine.
    seed : int, default 0
        Seeds the initial weights, batch order and augmentation.
    augment : float, default 1.0
        Strength of :func:`degrade_images` on every batch; 0 turns augmentation off (flips and jitter included).
    progress : bool, default False
        Show a tqdm bar over the optimisation steps.

    Returns
    -------
    ContentJudge
        In eval mode, on the CPU.
    """
    from tqdm.auto import tqdm

    images = _check_images(images)
    labels = np.asarray(labels)
    if labels.shape != (len(images), len(CATEGORIES)):
        raise ValueError(f"labels: expected shape ({len(images)}, {len(CATEGORIES)}) (one column per category of "
                         f"{CATEGORIES}), got {labels.shape}.")
    if len(images) < 2:
        raise ValueError(f"images: expected at least 2 training images, got {len(images)}.")
    x_all = _to_tensor(images, size)  # (n_images, 3, size, size)
    y_all = torch.from_numpy(labels.astype(np.float32))
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        judge = ContentJudge(size=size, width=width)
    batch_size = min(int(batch_size), len(images))
    steps_per_epoch = len(images) // batch_size
    total = max(1, int(epochs) * steps_per_epoch)
    optimiser = torch.optim.Adam(judge.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, total)
    judge.train()
    bar = tqdm(total=total, desc="content judge", disable=not progress)
    for _ in range(int(epochs)):
        order = torch.randperm(len(images), generator=generator)
        for step in range(steps_per_epoch):
            rows = order[step * batch_size:(step + 1) * batch_size]
            x = x_all[rows]
            if augment > 0:
                x = degrade_images(x, generator, augment)
            loss = F.binary_cross_entropy_with_logits(judge(x), y_all[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return judge.eval()


def predict_content(judge: ContentJudge, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probability that each image shows each category.

    Parameters
    ----------
    judge : ContentJudge
        A trained judge (:func:`train_content_judge`); inputs move to its device.
    images : array of shape (n_images, height, width, 3), uint8
        Any side; resized to ``judge.size`` (area average down, bilinear up).
    batch_size : int, default 256

    Returns
    -------
    array of shape (n_images, n_categories), float32
        Sigmoid outputs in [0, 1], columns in the order of ``judge.categories``.
    """
    if not isinstance(judge, ContentJudge):
        raise TypeError(f"judge: expected a ContentJudge (see train_content_judge), got {type(judge).__name__}.")
    images = _check_images(images)
    device = next(judge.parameters()).device
    out = np.zeros((len(images), len(judge.categories)), np.float32)
    was_training = judge.training
    judge.eval()
    with torch.no_grad():
        for i in range(0, len(images), int(batch_size)):
            x = _to_tensor(images[i:i + int(batch_size)], judge.size).to(device)
            out[i:i + len(x)] = torch.sigmoid(judge(x)).float().cpu().numpy()
    judge.train(was_training)
    return out


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve = the 2-way task's accuracy (a random positive outscores a random negative).

    scikit-learn's ``roc_auc_score`` (ties count one half); NaN when ``positive`` holds only one class.
    """
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def content_scores(probabilities: np.ndarray, labels: np.ndarray, categories: Sequence[str] = CATEGORIES,
                   threshold: float = 0.5) -> dict[str, dict[str, float]]:
    """How well judged probabilities match the true content, per category.

    Parameters
    ----------
    probabilities : array of shape (n_images, n_categories), float
        From :func:`predict_content`.
    labels : array of shape (n_images, n_categories), bool
        True content.
    categories : sequence of str, default CATEGORIES
        Column names.
    threshold : float, default 0.5
        A category is judged present when its probability exceeds this.

    Returns
    -------
    dict of str to dict
        Category -> ``{"accuracy": ..., "auc": ..., "base_rate": ...}``: accuracy of the thresholded judgement,
        area under the ROC curve (the 2-way task: chance 0.5; NaN when the category is always or never present),
        and the fraction of images that hold the category.
    """
    probabilities, labels = np.asarray(probabilities), np.asarray(labels, dtype=bool)
    if probabilities.shape != labels.shape or probabilities.ndim != 2 or probabilities.shape[1] != len(categories):
        raise ValueError(f"probabilities, labels: expected two arrays of shape (n_images, {len(categories)}), got "
                         f"{probabilities.shape} and {labels.shape}.")
    return {c: {"accuracy": float(((probabilities[:, j] > threshold) == labels[:, j]).mean()),
                "auc": _auc(probabilities[:, j], labels[:, j]),
                "base_rate": float(labels[:, j].mean())}
            for j, c in enumerate(categories)}
