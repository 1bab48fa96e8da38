"""Train the demo VDVAE on the demo stimulus world, and score encode -> decode reconstructions.

The demo model is :meth:`VDVAEConfig.demo` (the same :class:`VDVAE` class as the real tier, small
hyper-parameters), trained on the negative ELBO (discretised mixture of logistics + KL) with AdamW, a linear
warm-up, cosine decay, gradient clipping, and an exponential moving average of the weights (the EMA is what is
saved, as openai/vdvae ships its EMA weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from braindiff_app.evaluation.metrics import pixel_metrics
from braindiff_app.images import resize_images
from braindiff_app.models.vdvae import VDVAE, decode_latents, extract_latents

__all__ = ["TrainResult", "train_vdvae", "render_world_images", "reconstruction_scores"]


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train_vdvae`.

    Attributes
    ----------
    model : VDVAE
        The EMA model, in eval mode.
    elbo : ndarray of shape (n_steps,)
        Training negative ELBO per step (nats per sub-pixel; NaN where a step was skipped).
    n_skipped : int
        Steps skipped for a non-finite loss or a gradient norm above the threshold.
    """

    model: VDVAE
    elbo: np.ndarray
    n_skipped: int


def render_world_images(n: int, world_seed: int, size: int = 64, start: int = 0) -> np.ndarray:
    """Images of the demo stimulus world: uint8 array of shape (n_images, size, size, 3)."""
    from braindiff_app.demo.stimuli import render_scenes

    return render_scenes(n, seed=world_seed, size=size, start=start)[0]


def train_vdvae(
    model: VDVAE,
    images: np.ndarray,
    steps: int,
    batch_size: int = 32,
    lr: float = 2e-3,
    warmup: int = 50,
    kl_warmup: int = 0,
    ema_rate: float = 0.99,
    grad_clip: float = 200.0,
    skip_threshold: float = 1000.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Fit ``model`` to ``images`` by minimising the negative ELBO.

    Parameters
    ----------
    model : VDVAE
        Freshly built (its initialisation follows openai/vdvae), on its device.
    images : array of shape (n_images, height, width, 3), uint8
        Resized to ``model.config.image_size`` (bilinear, antialiased) like :func:`extract_latents` does.
    steps : int
        Optimiser steps.
    batch_size : int, default 32
    lr : float, default 2e-3
        Peak learning rate (linear warm-up over ``warmup`` steps, cosine decay to 10 % of it).
    warmup : int, default 50
    kl_warmup : int, default 0
        Steps over which the KL term's weight rises linearly from 0 to 1 (helps the latents carry information
        early in a short training; 0: full ELBO from the start).
    ema_rate : float, default 0.99
    grad_clip : float, default 200
        Gradient norm clip.
    skip_threshold : float, default 1000
        Steps whose gradient norm exceeds this are skipped (as openai/vdvae does).
    seed : int, default 0
        Seeds the batch order and the posterior noise.
    progress : bool, default True

    Returns
    -------
    TrainResult
    """
    from tqdm.auto import tqdm

    device = model.decoder.gain.device
    data = torch.from_numpy(resize_images(np.array(images), model.config.image_size, resample="torch-bilinear"))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    ema = VDVAE(model.config).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.9), weight_decay=0.0)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    elbos = np.full(steps, np.nan)
    n_skipped = 0
    order = np.empty(0, dtype=np.int64)
    model.train()
    bar = tqdm(range(steps), desc="train VDVAE", disable=not progress)
    for step in bar:
        if len(order) < batch_size:
            order = np.concatenate([order, rng.permutation(len(data))])
        index, order = order[:batch_size], order[batch_size:]
        stats = model(data[index].to(device))
        beta = min(1.0, (step + 1) / kl_warmup) if kl_warmup > 0 else 1.0
        loss = (stats["distortion"] + beta * stats["rate"]).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
        elbo = float(stats["elbo"].mean().detach())
        if math.isfinite(elbo) and math.isfinite(grad_norm) and grad_norm < skip_threshold:
            optimiser.step()
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                    p_ema.lerp_(p, 1.0 - ema_rate)
            elbos[step] = elbo
        else:
            n_skipped += 1
        scheduler.step()
        if step % 10 == 0:
            bar.set_postfix(elbo=f"{elbo:.3f}", rate=f"{float(stats['rate'].mean().detach()):.3f}")
    model.eval()
    return TrainResult(model=ema.eval(), elbo=elbos, n_skipped=n_skipped)


def reconstruction_scores(
    model: VDVAE,
    images: np.ndarray,
    baseline_image: np.ndarray,
    n_layers: int | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Encode -> decode held-out images and score them against a constant mean-image baseline.

    Latents of the first ``n_layers`` layers are posterior means; the rest come from the prior (temperature 1,
    image i seeded with ``seed + i``); the decoded images are upsampled bicubic to the ground truth's size.
    Scores are :func:`braindiff_app.evaluation.pixcorr` and :func:`braindiff_app.evaluation.ssim` (``"2d"``).

    Parameters
    ----------
    model : VDVAE
    images : array of shape (n_images, height, width, 3), uint8
        Held-out ground truth.
    baseline_image : array of shape (height, width, 3), uint8
        The mean training image (the guess of a model that knows nothing about the image).
    n_layers : int or None
    seed : int, default 0

    Returns
    -------
    dict of str to array of shape (n_images,), float32
        ``pixcorr`` and ``ssim`` of the reconstructions, ``pixcorr_baseline`` and ``ssim_baseline`` of the
        mean image (SSIM: grayscale, Gaussian weights, sigma 1.5, data range 1; PixCorr: Pearson r over all RGB
        values).
    """
    latents = extract_latents(model, images, n_layers=n_layers, progress=False)
    decoded = decode_latents(model, latents, n_layers=n_layers, seeds=seed + np.arange(len(images)), progress=False)
    baseline = np.broadcast_to(baseline_image, images.shape)
    # evaluation's PixCorr and 2-D SSIM; the decoded images are resized (PIL bicubic) to the ground truth's size
    scores = pixel_metrics(images, decoded, ("PixCorr", "SSIM"))
    base = pixel_metrics(images, baseline, ("PixCorr", "SSIM"))
    return {"pixcorr": scores["PixCorr"], "ssim": scores["SSIM"],
            "pixcorr_baseline": base["PixCorr"], "ssim_baseline": base["SSIM"]}
