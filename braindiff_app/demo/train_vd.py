"""Train the demo tier's Versatile Diffusion components on the demo stimulus world (``braindiff demo train-diffusion``).

Four stages, each seeded and saved on completion (a rerun resumes after the last finished stage):

1. CLIP-like encoders, contrastively (InfoNCE) on images and one random caption of each per step;
2. the AutoKL as an autoencoder (L1 + a small KL term) on random 32 px crops of the 64 px images;
3. the dual UNet on AutoKL latents, epsilon prediction, conditioned on the encoders' token features, with the
   vision/text mixing weight drawn per step (0, 1 or uniform) and condition dropout (each branch replaced by its
   unconditional features with probability ``p_uncond``) so that classifier-free guidance works; the saved UNet
   is the exponential moving average of its weights over the steps (decay ``unet_ema``);
4. the same UNet trained on for ``unet_tail_steps`` at a lower learning rate, averaged over a shorter window
   (``unet_tail_lr``, ``unet_tail_ema``): the 4000 steps of stage 3 left it undertrained (docs/legibility.md: a
   1500-step tail raised 4-way identification of subject 1's reconstructions from 52.9% to 60.8%, 5500 steps to
   62.7%, and from true features 76.5% -> 78.9% -> 83.5%; the tail with the conditioning corrupted like a ridge
   prediction did no better).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from braindiff_app.atomic import atomic_path, atomic_write_json
from braindiff_app.demo.vd import build_components, train_clip_tokenizer
from braindiff_app.evaluation.identification import two_way_identification
from braindiff_app.models._vd_compat import make_dual_unet, revert_dual_unet, set_dual_condition
from braindiff_app.models.clip_features import (
    clip_pixel_values,
    clip_text_features,
    clip_vision_features,
    unconditional_features,
)
from braindiff_app.models.versatile import VersatileComponents, save_versatile_diffusion
from braindiff_app.stage2 import TIER_DIFFUSION_STEPS

__all__ = ["TrainConfig", "clip_image_embeddings", "generate_from_true_features", "identification_from_features",
           "stages_from_folder", "train_demo_vd"]


@dataclass(frozen=True)
class TrainConfig:
    """Steps, batch sizes and learning rates of the four stages (defaults: about 65 min on 2 CPU cores), and the
    AutoKL's latent channels (:func:`~braindiff_app.demo.vd.build_components`)."""

    seed: int = 0
    vocab_size: int = 1000
    latent_channels: int = 4
    clip_steps: int = 1000
    clip_batch: int = 64
    clip_lr: float = 2e-3
    vae_steps: int = 1500
    vae_batch: int = 16
    vae_lr: float = 2e-3
    unet_steps: int = 4000
    unet_batch: int = 32
    unet_lr: float = 1e-3
    unet_ema: float = 0.999
    p_uncond: float = 0.1
    unet_tail_steps: int = 5500
    unet_tail_lr: float = 3e-4
    unet_tail_ema: float = 0.995


def _adam(params, lr: float):
    return torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)


def _train_clip(c: VersatileComponents, images: np.ndarray, captions: list[list[str]], cfg: TrainConfig,
                rng: np.random.Generator, progress: bool) -> list[float]:
    """InfoNCE between pooled image and text embeddings, learnable temperature."""
    device = c.image_encoder.device
    logit_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32, device=device))
    params = [*c.image_encoder.parameters(), *c.text_encoder.parameters(), logit_scale]
    opt = _adam(params, cfg.clip_lr)
    size = c.image_encoder.config.image_size
    losses = []
    for _ in tqdm(range(cfg.clip_steps), desc="CLIP encoders", disable=not progress):
        idx = rng.choice(len(images), cfg.clip_batch, replace=False)
        pixels = clip_pixel_values(torch.from_numpy(images[idx]).permute(0, 3, 1, 2).to(device) / 255.0, size)
        texts = [captions[i][rng.integers(len(captions[i]))] for i in idx]
        ids = c.tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
        ids = ids.to(device)
        img = torch.nn.functional.normalize(c.image_encoder(pixel_values=pixels).image_embeds, dim=-1)
        txt = torch.nn.functional.normalize(c.text_encoder(input_ids=ids).text_embeds, dim=-1)
        logits = logit_scale.exp().clamp(max=100) * img @ txt.T
        target = torch.arange(len(idx), device=device)
        loss = (torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T,
                                                                                                     target)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _train_vae(vae, images: np.ndarray, cfg: TrainConfig, rng: np.random.Generator, progress: bool) -> list[float]:
    """L1 reconstruction + 1e-6 KL on random 32 px crops (the AutoKL is convolutional)."""
    opt = _adam(vae.parameters(), cfg.vae_lr)
    side, crop = images.shape[1], 32
    losses = []
    for _ in tqdm(range(cfg.vae_steps), desc="AutoKL", disable=not progress):
        idx = rng.choice(len(images), cfg.vae_batch, replace=False)
        top, left = rng.integers(0, side - crop + 1, 2) // 8 * 8
        x = torch.from_numpy(images[idx, top:top + crop, left:left + crop]).permute(0, 3, 1, 2).float() / 127.5 - 1
        x = x.to(vae.device)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = (recon - x).abs().mean() + 1e-6 * posterior.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def _encode_latents(vae, images: np.ndarray, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2).float() / 127.5 - 1
        posterior = vae.encode(x.to(vae.device)).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


def _train_unet(c: VersatileComponents, images: np.ndarray, captions: list[list[str]], cfg: TrainConfig,
                rng: np.random.Generator, progress: bool, tail: bool = False) -> list[float]:
    """Epsilon-prediction loss of the dual UNet on (latent, vision tokens, text tokens) triples (with ``tail``, the
    ``unet_tail_*`` steps, learning rate and averaging)."""
    means, stds = _encode_latents(c.vae, images)
    if not tail:  # the tail keeps the latent scale its UNet was trained with
        c.vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    scale = float(c.vae.config.scaling_factor)
    device = c.image_unet.device
    vision = torch.from_numpy(clip_vision_features(c.image_encoder, images, batch_size=64)).to(device)
    text = torch.from_numpy(clip_text_features(c.text_encoder, c.tokenizer, captions, batch_size=64)).to(device)
    vision_uncond, text_uncond = (torch.from_numpy(u).to(device) for u in unconditional_features(
        c.image_encoder, c.text_encoder, c.tokenizer))
    unet = make_dual_unet(c.image_unet, c.text_unet).train().requires_grad_(True)
    steps, lr, ema_decay = ((cfg.unet_tail_steps, cfg.unet_tail_lr, cfg.unet_tail_ema) if tail
                            else (cfg.unet_steps, cfg.unet_lr, cfg.unet_ema))
    opt = _adam(unet.parameters(), lr)
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params]
    n_train = c.scheduler.config.num_train_timesteps
    losses = []
    for step in tqdm(range(steps), desc="UNet, low-rate tail" if tail else "UNet", disable=not progress):
        idx = torch.from_numpy(rng.choice(len(images), cfg.unet_batch, replace=False)).to(device)
        eps = torch.from_numpy(rng.standard_normal(tuple(means[idx].shape), np.float32)).to(device)
        latents = (means[idx] + stds[idx] * eps) * scale
        noise = torch.from_numpy(rng.standard_normal(tuple(latents.shape), np.float32)).to(device)
        t = torch.from_numpy(rng.integers(0, n_train, len(idx))).to(device)
        drop_v = torch.from_numpy(rng.random(len(idx)) < cfg.p_uncond).view(-1, 1, 1).to(device)
        drop_t = torch.from_numpy(rng.random(len(idx)) < cfg.p_uncond).view(-1, 1, 1).to(device)
        context = torch.cat([torch.where(drop_v, vision_uncond, vision[idx]),
                             torch.where(drop_t, text_uncond, text[idx])], dim=1)
        weight = (0.0, 1.0, float(rng.random()))[rng.integers(3)]
        set_dual_condition(unet, weight, vision.shape[1])
        pred = unet(c.scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=context).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        decay = min(ema_decay, (1 + step) / (10 + step))  # short warm-up: early weights fade fast
        with torch.no_grad():
            for average, p in zip(ema, params, strict=True):
                average.lerp_(p, 1 - decay)
    with torch.no_grad():
        for p, average in zip(params, ema, strict=True):
            p.copy_(average)
    revert_dual_unet(unet).eval()
    return losses


def _stage_path(work: Path, stage: str) -> Path:
    return work / f"{stage}.pt"


#: The stages a saved folder holds (its components, in the order the stage checkpoints store them).
_FOLDER_STAGES = (("clip", ("image_encoder", "text_encoder")), ("vae", ("vae",)),
                  ("unet", ("image_unet", "text_unet")), ("unet_tail", ("image_unet", "text_unet")))


def stages_from_folder(folder: str | Path, work_dir: str | Path) -> list[str]:
    """Write the checkpoints of the stages a saved demo folder holds, so :func:`train_demo_vd` resumes after them
    and trains only what the folder lacks (a folder saved before the UNet's low-rate tail existed: the tail).

    The folder's stages are those its ``training.json`` lists under ``final_losses`` (clip, vae, unet, and unet_tail
    once trained: then its UNet is the tailed one, and nothing is left to train). The folder's fp16 weights become
    float32 checkpoints, each with the recorded final loss. Stages already in ``work_dir`` are left alone.

    Returns
    -------
    list of str
        The stages written.

    Raises
    ------
    ValueError
        The folder has no readable ``training.json``, or it lacks one of the first three stages.
    """
    import json

    from braindiff_app.models.versatile import load_versatile_diffusion

    folder, work = Path(folder), Path(work_dir)
    try:
        losses = json.loads((folder / "training.json").read_text())["final_losses"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{folder / 'training.json'}: no readable final_losses ({type(exc).__name__}); expected a "
                         "folder written by `braindiff demo train-diffusion`.") from None
    missing = [stage for stage, _ in _FOLDER_STAGES[:3] if stage not in losses]
    if missing:
        raise ValueError(f"{folder / 'training.json'}: no {', '.join(missing)} stage; expected a folder written by "
                         "`braindiff demo train-diffusion`.")
    c = load_versatile_diffusion(folder, dtype=torch.float32)
    work.mkdir(parents=True, exist_ok=True)
    written = []
    for stage, names in _FOLDER_STAGES:
        path = _stage_path(work, stage)
        if path.exists() or stage not in losses:
            continue
        with atomic_path(path) as tmp:
            torch.save({"weights": [getattr(c, n).state_dict() for n in names],
                        "losses": [float(losses[stage])],
                        "scaling_factor": float(c.vae.config.scaling_factor)}, tmp)
        written.append(stage)
    return written


def train_demo_vd(images: np.ndarray, captions: list[list[str]], out_dir: str | Path, work_dir: str | Path,
                  config: TrainConfig = TrainConfig(), device=None, progress: bool = True) -> VersatileComponents:
    """Train the demo Versatile Diffusion components and save them (fp16) as a diffusers-layout folder.

    Parameters
    ----------
    images : ndarray of shape (n_images, 64, 64, 3), uint8
        Training stimuli.
    captions : list of list of str
        Their captions (one list per image).
    out_dir : str or Path
        Destination folder (``assets/demo/models/vd``), written atomically at the end.
    work_dir : str or Path
        Holds each finished stage's weights (``*.pt``, loaded with ``weights_only=True``) so a rerun resumes.
    config : TrainConfig
        Steps, batch sizes, learning rates and the seed.
    device : torch.device or None, default None
        Where to train (None: the CPU); the caller resolves it (``config.resolve_device``).
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    VersatileComponents
        The trained components in eval mode (float32, on ``device``).
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    tokenizer = train_clip_tokenizer([c for image_captions in captions for c in image_captions], config.vocab_size)
    c = build_components(tokenizer, "demo", config.seed, latent_channels=config.latent_channels)
    for name in ("vae", "image_unet", "text_unet", "image_encoder", "text_encoder"):
        getattr(c, name).to(device or "cpu")
    log: dict[str, list[float]] = {}
    stages = (("clip", (c.image_encoder, c.text_encoder), lambda: _train_clip(c, images, captions, config, rng,
                                                                            progress)),
              ("vae", (c.vae,), lambda: _train_vae(c.vae, images, config, rng, progress)),
              ("unet", (c.image_unet, c.text_unet), lambda: _train_unet(c, images, captions, config, rng, progress)),
              ("unet_tail", (c.image_unet, c.text_unet),
               lambda: _train_unet(c, images, captions, config, rng, progress, tail=True)))
    if config.unet_tail_steps <= 0:
        stages = stages[:3]
    for stage, modules, train in stages:
        path = _stage_path(work, stage)
        if path.exists():
            state = torch.load(path, weights_only=True, map_location=device or "cpu")
            try:
                for module, weights in zip(modules, state["weights"], strict=True):
                    module.load_state_dict(weights)
            except RuntimeError:  # torch's message lists every mismatched tensor
                raise ValueError(f"{path}: a {stage} stage of models of another shape (e.g. another "
                                 f"--latent-channels than {config.latent_channels}); delete it, or train in another "
                                 "--work folder.") from None
            if stage.startswith("unet"):
                c.vae.register_to_config(scaling_factor=state["scaling_factor"])
            log[stage] = state["losses"]
            rng = np.random.default_rng([config.seed, len(log)])
            continue
        for module in modules:
            module.train().requires_grad_(True)
        losses = train()
        log[stage] = losses
        for module in modules:
            module.eval().requires_grad_(False)
        with atomic_path(path) as tmp:
            torch.save({"weights": [m.state_dict() for m in modules], "losses": losses,
                        "scaling_factor": float(c.vae.config.scaling_factor)}, tmp)
        rng = np.random.default_rng([config.seed, len(log)])
    save_versatile_diffusion(c, out_dir, dtype=torch.float16)
    summary = {"config": asdict(config), "n_images": len(images),
               "final_losses": {k: float(np.mean(v[-20:])) for k, v in log.items()}}
    atomic_write_json(Path(out_dir) / "training.json", summary)
    return c


def generate_from_true_features(c: VersatileComponents, images: np.ndarray, captions: list[list[str]],
                                init: np.ndarray | None = None, seed: int = 0,
                                num_inference_steps: int = TIER_DIFFUSION_STEPS["demo"],
                                batch_size: int = 16) -> np.ndarray:
    """Images generated from the scenes' own CLIP vision and text features (the paper's mixing 0.6 vision, guidance
    7.5), with no init image (full denoising) or from ``init`` at strength 0.75; seeds ``seed + i``.

    Returns
    -------
    array of shape (n_images, 64, 64, 3), uint8
    """
    from braindiff_app.models.img2img import DualGuidedImg2Img

    vision = clip_vision_features(c.image_encoder, images)
    text = clip_text_features(c.text_encoder, c.tokenizer, captions)
    vision_uncond, text_uncond = unconditional_features(c.image_encoder, c.text_encoder, c.tokenizer)
    pipe = DualGuidedImg2Img(c.vae, c.image_unet, c.text_unet, c.scheduler)
    return pipe(init, vision, text, vision_uncond=vision_uncond, text_uncond=text_uncond,
                num_inference_steps=num_inference_steps, seeds=np.arange(len(images)) + seed,
                batch_size=batch_size).images


@torch.no_grad()
def clip_image_embeddings(c: VersatileComponents, images: np.ndarray) -> np.ndarray:
    """Pooled CLIP image embeddings (n_images, projection_dim) of uint8 images, as training scores them (bicubic
    resize, :func:`~braindiff_app.models.clip_features.clip_pixel_values`)."""
    pixels = clip_pixel_values(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255,
                               c.image_encoder.config.image_size)
    return c.image_encoder(pixel_values=pixels).image_embeds.numpy()


def identification_from_features(c: VersatileComponents, images: np.ndarray, captions: list[list[str]],
                                 num_inference_steps: int = TIER_DIFFUSION_STEPS["demo"], seed: int = 0,
                                 batch_size: int = 16) -> dict:
    """How recognisable images generated from ground-truth CLIP features are (2-way identification, demo CLIP).

    Generates each image from its own vision and text features twice (:func:`generate_from_true_features`): with no
    init image, and from a blurred init (the image at 8 px, upsampled; a stand-in for the VDVAE guess); the blurred
    inits themselves are scored as a baseline. Identification compares pooled CLIP image embeddings
    (:func:`clip_image_embeddings`, Pearson r) with :func:`braindiff_app.evaluation.two_way_identification`.

    Returns
    -------
    dict
        Mean 2-way identification per condition (chance 0.5) and the settings used.
    """
    small = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float(), size=8,
                                            mode="area")
    blurred = torch.nn.functional.interpolate(small, size=images.shape[1], mode="bicubic").clamp(0, 255)
    blurred = blurred.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    common = dict(seed=seed, num_inference_steps=num_inference_steps, batch_size=batch_size)
    generated = {"no_init": generate_from_true_features(c, images, captions, **common),
                 "blurred_init_strength_0.75": generate_from_true_features(c, images, captions, blurred, **common),
                 "blurred_init_itself": blurred}
    truth = clip_image_embeddings(c, images)
    scores = {k: float(two_way_identification(truth, clip_image_embeddings(c, v)).mean())
              for k, v in generated.items()}
    return {"two_way_identification": scores, "n_images": len(images), "num_inference_steps": num_inference_steps}
