"""VDVAE building blocks: bottleneck residual blocks, encoder, top-down decoder blocks, mixture-of-logistics head.

Module and parameter names follow openai/vdvae so that its checkpoints load with strict key matching (see
``docs/vdvae.md``). The maths (bottleneck blocks, diagonal Gaussian latents, discretised mixture of logistics)
follows the VDVAE paper (Child, 2021) and PixelCNN++ (Salimans et al., 2017); the code is this project's.

Tensors are NCHW inside the network; the mixture head returns its parameters channels-last, (n, H, W, 10 * M).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Block",
    "DecBlock",
    "DmolNet",
    "Encoder",
    "Decoder",
    "gaussian_kl",
    "parse_layer_string",
]


def parse_layer_string(spec: str) -> list[tuple[int, int | None]]:
    """Parse a VDVAE block string such as ``"64x11,64d2,1x5"`` into ``(resolution, rate)`` pairs.

    ``RxN`` gives N blocks at resolution R (rate None); ``RdK`` one block at R that average-pools by K; ``RmL``
    one decoder block at R that first mixes in the resolution-L state; a bare ``R`` one block at R.

    Parameters
    ----------
    spec : str
        Comma-separated items.

    Returns
    -------
    list of (int, int or None)
    """
    layers: list[tuple[int, int | None]] = []
    for item in spec.split(","):
        item = item.strip()
        try:
            if "x" in item:
                res, count = (int(v) for v in item.split("x"))
                layers += [(res, None)] * count
            elif "d" in item or "m" in item:
                res, rate = (int(v) for v in item.replace("m", "d").split("d"))
                layers.append((res, rate))
            else:
                layers.append((int(item), None))
        except ValueError:
            raise ValueError(
                f"block string: cannot read item {item!r} of {spec!r}; expected items like '64x11', '64d2', '4m1'."
            ) from None
    return layers


def _conv(in_ch: int, out_ch: int, kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)
    nn.init.zeros_(conv.bias)
    return conv


class Block(nn.Module):
    """Bottleneck block: four convolutions (1x1, 3x3, 3x3, 1x1), each preceded by GELU.

    Parameters
    ----------
    in_width, middle_width, out_width : int
        Channels in, inside the bottleneck, out.
    down_rate : int or None
        Average-pool the output by this factor.
    residual : bool
        Add the input to the output (needs ``in_width == out_width``).
    use_3x3 : bool
        3x3 middle convolutions (False at resolutions 1 and 2, where they would see only padding).
    zero_last : bool
        Initialise the last convolution to zero.
    """

    def __init__(self, in_width: int, middle_width: int, out_width: int, down_rate: int | None = None,
                 residual: bool = False, use_3x3: bool = True, zero_last: bool = False) -> None:
        super().__init__()
        self.down_rate = down_rate
        self.residual = residual
        kernel = 3 if use_3x3 else 1
        self.c1 = _conv(in_width, middle_width, 1)
        self.c2 = _conv(middle_width, middle_width, kernel)
        self.c3 = _conv(middle_width, middle_width, kernel)
        self.c4 = _conv(middle_width, out_width, 1)
        if zero_last:
            nn.init.zeros_(self.c4.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.gelu(x))
        h = self.c2(F.gelu(h))
        h = self.c3(F.gelu(h))
        h = self.c4(F.gelu(h))
        out = x + h if self.residual else h
        if self.down_rate is not None:
            out = F.avg_pool2d(out, kernel_size=self.down_rate, stride=self.down_rate)
        return out


class Encoder(nn.Module):
    """Bottom-up path: ``in_conv`` then residual blocks; keeps the last activation at each resolution."""

    def __init__(self, width: int, bottleneck_multiple: float, enc_blocks: str, image_channels: int = 3) -> None:
        super().__init__()
        self.in_conv = _conv(image_channels, width, 3)
        layers = parse_layer_string(enc_blocks)
        middle = int(width * bottleneck_multiple)
        self.enc_blocks = nn.ModuleList(
            Block(width, middle, width, down_rate=rate, residual=True, use_3x3=res > 2) for res, rate in layers
        )
        with torch.no_grad():
            for block in self.enc_blocks:
                block.c4.weight.mul_(math.sqrt(1.0 / len(layers)))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Map normalised images (n, 3, H, W) to ``{resolution: activation (n, width, res, res)}``."""
        x = self.in_conv(x)
        activations = {x.shape[2]: x}
        for block in self.enc_blocks:
            x = block(x)
            activations[x.shape[2]] = x
        return activations


def gaussian_kl(mu1: torch.Tensor, mu2: torch.Tensor, logsigma1: torch.Tensor, logsigma2: torch.Tensor) -> torch.Tensor:
    """KL(N(mu1, sigma1^2) || N(mu2, sigma2^2)) elementwise, from log standard deviations (nats)."""
    variance_ratio_term = (torch.exp(2 * logsigma1) + (mu1 - mu2) ** 2) * torch.exp(-2 * logsigma2)
    return -0.5 + logsigma2 - logsigma1 + 0.5 * variance_ratio_term


class DecBlock(nn.Module):
    """One top-down layer with one latent variable of shape (zdim, res, res).

    ``enc`` reads the decoder state and the encoder activation and gives the posterior (mean, log std);
    ``prior`` reads the state and gives the prior (mean, log std) plus a state update; ``z_proj`` maps the
    latent into the state; ``resnet`` refines it.
    """

    def __init__(self, res: int, mixin: int | None, width: int, zdim: int, bottleneck_multiple: float,
                 n_blocks: int) -> None:
        super().__init__()
        self.base = res
        self.mixin = mixin
        self.zdim = zdim
        use_3x3 = res > 2
        middle = int(width * bottleneck_multiple)
        self.enc = Block(width * 2, middle, zdim * 2, residual=False, use_3x3=use_3x3)
        self.prior = Block(width, middle, zdim * 2 + width, residual=False, use_3x3=use_3x3, zero_last=True)
        self.z_proj = _conv(zdim, width, 1)
        self.resnet = Block(width, middle, width, residual=True, use_3x3=use_3x3)
        with torch.no_grad():
            self.z_proj.weight.mul_(math.sqrt(1.0 / n_blocks))
            self.resnet.c4.weight.mul_(math.sqrt(1.0 / n_blocks))

    def state_in(self, xs: dict[int, torch.Tensor]) -> torch.Tensor:
        """The state entering this block: the state at its resolution plus the upsampled mix-in state."""
        x = xs[self.base]
        if self.mixin is not None:
            low = xs[self.mixin][:, : x.shape[1]]
            x = x + F.interpolate(low, scale_factor=self.base // self.mixin, mode="nearest")
        return x

    def posterior(self, x: torch.Tensor, acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log standard deviation, each (n, zdim, res, res)."""
        qm, qv = self.enc(torch.cat([x, acts], dim=1)).chunk(2, dim=1)
        return qm, qv

    def prior_step(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prior mean, prior log standard deviation and the updated state."""
        feats = self.prior(x)
        pm, pv, update = feats[:, : self.zdim], feats[:, self.zdim : 2 * self.zdim], feats[:, 2 * self.zdim :]
        return pm, pv, x + update

    def state_out(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Inject the latent ``z`` into the state and refine it."""
        return self.resnet(x + self.z_proj(z))


class Decoder(nn.Module):
    """Top-down path: ``dec_blocks``, learned start states ``bias_xs``, output ``gain``/``bias`` and ``out_net``."""

    def __init__(self, width: int, zdim: int, bottleneck_multiple: float, dec_blocks: str, num_mixtures: int,
                 no_bias_above: int) -> None:
        super().__init__()
        layers = parse_layer_string(dec_blocks)
        self.dec_blocks = nn.ModuleList(
            DecBlock(res, mixin, width, zdim, bottleneck_multiple, n_blocks=len(layers)) for res, mixin in layers
        )
        self.resolutions = sorted({res for res, _ in layers})
        self.bias_xs = nn.ParameterList(
            nn.Parameter(torch.zeros(1, width, res, res)) for res in self.resolutions if res <= no_bias_above
        )
        self.out_net = DmolNet(width, num_mixtures)
        self.gain = nn.Parameter(torch.ones(1, width, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, width, 1, 1))

    def start_states(self, n: int) -> dict[int, torch.Tensor]:
        """The learned start state of each resolution, expanded to a batch of ``n``."""
        return {b.shape[2]: b.expand(n, -1, -1, -1) for b in self.bias_xs}

    def final(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain + self.bias


class DmolNet(nn.Module):
    """Output head: a 1x1 convolution to the parameters of a discretised mixture of ``num_mixtures`` logistics.

    Per pixel: M mixture logits, then for each of the 3 channels M means, M log scales and M coefficients
    (green depends on red, blue on red and green, through the coefficients).
    """

    def __init__(self, width: int, num_mixtures: int) -> None:
        super().__init__()
        self.num_mixtures = num_mixtures
        self.out_conv = _conv(width, num_mixtures * 10, 1)

    def forward(self, px_z: torch.Tensor) -> torch.Tensor:
        """Mixture parameters, channels-last: (n, H, W, 10 * M)."""
        return self.out_conv(px_z).permute(0, 2, 3, 1)

    def _unpack(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.num_mixtures
        logits = params[..., :m]
        rest = params[..., m:].reshape(*params.shape[:-1], 3, 3 * m)  # (n, H, W, channel, 3M)
        means = rest[..., :m]
        log_scales = rest[..., m : 2 * m].clamp_min(-7.0)
        coeffs = torch.tanh(rest[..., 2 * m :])
        return logits, means, log_scales, coeffs

    def nll(self, px_z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per sub-pixel (nats) of 8-bit images ``x`` (n, H, W, 3) scaled to [-1, 1].

        Returns
        -------
        torch.Tensor of shape (n,)
        """
        logits, means, log_scales, coeffs = self._unpack(self.forward(px_z))
        xe = x.unsqueeze(-1)  # (n, H, W, 3, 1)
        mean_g = means[..., 1, :] + coeffs[..., 0, :] * xe[..., 0, :]
        mean_b = means[..., 2, :] + coeffs[..., 1, :] * xe[..., 0, :] + coeffs[..., 2, :] * xe[..., 1, :]
        centred = xe - torch.stack([means[..., 0, :], mean_g, mean_b], dim=-2)  # (n, H, W, 3, M)
        inv_s = torch.exp(-log_scales)
        upper = inv_s * (centred + 1.0 / 255.0)  # bins are 2/255 wide on [-1, 1]
        lower = inv_s * (centred - 1.0 / 255.0)
        log_cdf_upper = upper - F.softplus(upper)  # log P(X <= x + half bin): the 0 bin
        log_sf_lower = -F.softplus(lower)  # log P(X > x - half bin): the 255 bin
        bin_mass = torch.sigmoid(upper) - torch.sigmoid(lower)
        mid = inv_s * centred
        log_density = mid - log_scales - 2.0 * F.softplus(mid) - math.log(127.5)  # fallback for tiny masses
        interior = torch.where(bin_mass > 1e-5, torch.log(bin_mass.clamp_min(1e-12)), log_density)
        log_p = torch.where(xe < -0.999, log_cdf_upper, torch.where(xe > 0.999, log_sf_lower, interior))
        log_p = log_p.sum(dim=-2) + F.log_softmax(logits, dim=-1)  # (n, H, W, M)
        return -torch.logsumexp(log_p, dim=-1).sum(dim=(1, 2)) / (x.shape[1] * x.shape[2] * 3)

    def pixels(self, px_z: torch.Tensor, mode: str, uniforms: Sequence[torch.Tensor] | None = None,
               uniform: str = "clamp") -> torch.Tensor:
        """Images in [-1, 1], (n, H, W, 3), from the mixture.

        Parameters
        ----------
        px_z : torch.Tensor of shape (n, width, H, W)
        mode : str in {"mode", "sample"}
            ``"mode"``: the most probable component's mean (deterministic). ``"sample"``: draw the component and
            a logistic sample, as openai/vdvae does.
        uniforms : pair of torch.Tensor or None
            For ``"sample"``: uniform(0, 1) noise of shapes (n, H, W, M) and (n, H, W, 3).
        uniform : str in {"clamp", "rescale"}, default "clamp"
            How the noise is kept inside [1e-5, 1 - 1e-5]: ``"clamp"`` clips it; ``"rescale"`` maps [0, 1) onto
            it, as openai/vdvae's ``uniform_(1e-5, 1. - 1e-5)`` draws.
        """
        logits, means, log_scales, coeffs = self._unpack(self.forward(px_z))
        if mode == "sample":
            if uniform == "rescale":
                u_mix, u_pix = (1e-5 + u * (1.0 - 2e-5) for u in uniforms)
            else:
                u_mix, u_pix = (u.clamp(1e-5, 1.0 - 1e-5) for u in uniforms)
            component = torch.argmax(logits - torch.log(-torch.log(u_mix)), dim=-1)
        else:
            component = torch.argmax(logits, dim=-1)
        onehot = F.one_hot(component, self.num_mixtures).to(means.dtype).unsqueeze(-2)  # (n, H, W, 1, M)
        mu = (means * onehot).sum(-1)
        coef = (coeffs * onehot).sum(-1)
        if mode == "sample":
            mu = mu + torch.exp((log_scales * onehot).sum(-1)) * (torch.log(u_pix) - torch.log(1.0 - u_pix))
        r = mu[..., 0].clamp(-1.0, 1.0)
        g = (mu[..., 1] + coef[..., 0] * r).clamp(-1.0, 1.0)
        b = (mu[..., 2] + coef[..., 1] * r + coef[..., 2] * g).clamp(-1.0, 1.0)
        return torch.stack([r, g, b], dim=-1)
