"""Salient-input reconstruction: plausible variations of an input that keep its salient part.

After the second contribution of Thakur & Fischmeister, "A generalizable
saliency map-based interpretation of model outcome" (ICPR 2020): from the
salient part of an input, generate variations drawn from the data distribution
and check whether the classifier still gives the original class.  If a map is
a good explanation, what it marks salient should be enough: everything else,
filled in plausibly, should not change the prediction.

Here the model of the data is a small convolutional VAE of MNIST
(:class:`MnistVAE`, trained by :func:`train_vae` with seed 0 and shipped with
the package like the classifiers' weights).  :func:`reconstruct` keeps the top
``keep`` fraction of the input's pixels by the saliency map and draws ``n``
variations:

1. ``n`` latent codes start from the prior ``N(0, I)``;
2. each is moved towards the posterior given the kept pixels by ``steps`` of
   Langevin dynamics on ``log p(x_kept | z) + log p(z)`` (the decoder's
   Bernoulli likelihood of the kept pixels only, the standard normal prior),
   with a step size that anneals from ``step_size`` to a tenth of it;
3. a variation is the decoded image with the kept pixels pasted back
   (``paste=True``, the default: the salient part is kept exactly), or the
   decoded image itself (``paste=False``).

Everything is seeded by ``seed`` (a ``torch.Generator``): the same call gives
the same variations bit for bit.  The study that scores maps by their
reconstructions (the paper's "accuracy": the share of variations the
classifier assigns to the original class, with random-region and full-image
controls) is :func:`smug.study.reconstruction.run_reconstruction_study`.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError, ValidationError

__all__ = [
    "MnistVAE",
    "train_vae",
    "pretrained_vae",
    "vae_metrics",
    "keep_mask",
    "reconstruct",
    "VAE_NAME",
]

#: The shipped model of the data's name (``<name>.pt`` and ``<name>.json`` in ``smug/zoo/weights``).
VAE_NAME = "mnist_vae"


class MnistVAE(nn.Module):
    """A small convolutional VAE of 28x28 grey images in ``[0, 1]`` (Bernoulli decoder).

    Encoder: Conv(1→32, 4, stride 2) · ReLU · Conv(32→64, 4, stride 2) · ReLU ·
    Linear(3136 → 2 x latent); decoder: Linear(latent → 3136) · ReLU ·
    ConvT(64→32, 4, stride 2) · ReLU · ConvT(32→1, 4, stride 2), logits.

    Args:
        latent_dim: the latent code's size.
    """

    def __init__(self, latent_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten()
        )
        self.to_stats = nn.Linear(64 * 7 * 7, 2 * self.latent_dim)
        self.from_code = nn.Linear(self.latent_dim, 64 * 7 * 7)
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance, each ``(B, latent_dim)``."""
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's Bernoulli logits, ``(B, 1, 28, 28)``."""
        return self.decoder(self.from_code(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded images in ``[0, 1]``, ``(B, 1, 28, 28)``."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` from its posterior mean (in ``[0, 1]``)."""
        return self.decode(self.encode(x)[0])


def _elbo_terms(vae: MnistVAE, x: torch.Tensor, gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = vae.encode(x)
    eps = torch.randn(mu.shape, generator=gen, dtype=mu.dtype)
    z = mu + eps * torch.exp(0.5 * logvar)
    rec = F.binary_cross_entropy_with_logits(vae.decode_logits(z), x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
    return rec, kl


def train_vae(
    *,
    epochs: int = 8,
    latent_dim: int = 16,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[MnistVAE, dict[str, Any]]:
    """Train :class:`MnistVAE` on the MNIST training split (seeded, deterministic on CPU).

    Args:
        epochs: passes over the 60000 training images.
        latent_dim: the latent code's size.
        batch_size: images per step.
        lr: Adam's learning rate (decayed by cosine to zero).
        seed: seeds the initialisation, the shuffling and the reparametrisation noise.
        progress: a tqdm bar (off when the output is not a terminal).

    Returns:
        ``(vae, metrics)``: the model in eval mode and a dict with the test split's
        negative ELBO and reconstruction BCE (nats per image), the training time,
        the recipe and the torch version.
    """
    from tqdm import tqdm

    from ..zoo.data import load_mnist
    from ..zoo.models import deterministic_algorithms

    images = torch.from_numpy(np.array(load_mnist("train")[0]))
    test = torch.from_numpy(np.array(load_mnist("test")[0]))
    torch.manual_seed(seed)
    vae = MnistVAE(latent_dim)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(seed)
    noise = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    with (
        deterministic_algorithms(),
        tqdm(
            total=epochs * steps_per_epoch, desc="training mnist_vae", unit="batch", disable=None if progress else True
        ) as bar,
    ):
        vae.train()
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=shuffle)
            for s in range(0, len(images), batch_size):
                rec, kl = _elbo_terms(vae, images[order[s : s + batch_size]], noise)
                loss = (rec + kl).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.1f}")
    seconds = time.perf_counter() - start
    vae.eval()
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 2)
        rec, kl = zip(*(_elbo_terms(vae, test[s : s + 1000], gen) for s in range(0, len(test), 1000)))
        rec_t, kl_t = torch.cat(rec), torch.cat(kl)
    metrics = {
        "name": VAE_NAME,
        "test_neg_elbo_nats": round(float((rec_t + kl_t).mean()), 3),
        "test_reconstruction_bce_nats": round(float(rec_t.mean()), 3),
        "epochs": epochs,
        "latent_dim": latent_dim,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "training_seconds": round(seconds, 1),
        "torch_version": torch.__version__,
    }
    return vae, metrics


def pretrained_vae(*, source: str = "auto", retrain: bool = False, progress: bool = True) -> MnistVAE:
    """The reference model of the MNIST data: the shipped :class:`MnistVAE` weights (no training).

    Args:
        source: ``"auto"`` (the shipped weights; if missing or damaged, a warning and
            the cache), ``"shipped"`` (only the shipped weights) or ``"cache"``
            (``<cache_dir()>/mnist_vae.pt``, trained and cached on a miss).
        retrain: train afresh with :func:`train_vae`'s defaults and overwrite the cache.
        progress: a progress bar while training.

    Returns:
        The VAE (float32, CPU) in eval mode.

    Raises:
        smug.zoo.shipped.ShippedDataError: ``source="shipped"`` and the shipped file is missing or damaged.
    """
    from ..zoo.models import shipped_or_cached

    def load(path: Any) -> MnistVAE:
        state = torch.load(path, map_location="cpu", weights_only=True)
        vae = MnistVAE(state["from_code.weight"].shape[1])
        vae.load_state_dict(state, strict=True)
        return vae

    model = shipped_or_cached(VAE_NAME, load, lambda: train_vae(progress=progress), source=source, retrain=retrain)
    return cast(MnistVAE, model)


def vae_metrics(*, source: str = "auto") -> dict[str, Any]:
    """The metrics recorded when the VAE was trained (see :func:`train_vae`): the shipped
    ``mnist_vae.json``, or the cache's (``source`` as in :func:`pretrained_vae`)."""
    from ..zoo.models import _metrics_path, recorded_metrics

    return recorded_metrics(
        VAE_NAME, _metrics_path(VAE_NAME), source=source, missing="call pretrained_vae(source='cache') first"
    )


def _check_keep(keep: Any) -> float:
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not (0.0 < float(keep) <= 1.0):
        raise ConfigError(f"keep is the fraction of the input kept, in (0, 1]; got {keep!r}")
    return float(keep)


def _as_image(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.array(x))
    if not isinstance(x, torch.Tensor):
        raise ValidationError(f"x must be a tensor or a numpy array, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ShapeError(f"x must be one image, (C, H, W), (H, W) or (1, C, H, W); got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValidationError("x contains NaN or infinite values")
    return x.detach().float().cpu()


def keep_mask(saliency_map: Any, keep: float, shape: tuple[int, ...], *, seed: int = 0) -> torch.Tensor:
    """The kept region: a ``(H, W)`` boolean mask of the ``round(keep * H * W)`` most salient pixels (at least one).

    Ties (a SMUG map is zero outside its mask) are broken by a random order seeded
    by ``seed``, not by position, so a tie never favours the image's top rows.

    Args:
        saliency_map: ``(H, W)``, ``(C, H, W)`` (channels averaged) or ``(1, C, H, W)``; finite.
        keep: the fraction of pixels kept, in ``(0, 1]``.
        shape: the image's shape ``(C, H, W)``; the map's ``(H, W)`` must match it.
        seed: seeds the tie-break.

    Raises:
        ConfigError: ``keep`` outside ``(0, 1]``.
        ShapeError: a map shaped unlike the input.
    """
    keep = _check_keep(keep)
    m = saliency_map.detach().cpu().double().numpy() if isinstance(saliency_map, torch.Tensor) else saliency_map
    m = np.asarray(m, dtype=np.float64)
    if m.ndim == 4 and m.shape[0] == 1:
        m = m[0]
    if m.ndim == 3:
        m = m.mean(axis=0)
    h, w = shape[-2:]
    if m.shape != (h, w):
        raise ShapeError(
            f"the saliency map has shape {np.shape(saliency_map)}, the input {tuple(shape)}: "
            f"pass an (H, W) = ({h}, {w}) map (or (C, H, W)) of this input"
        )
    if not np.isfinite(m).all():
        raise ValidationError("the saliency map contains NaN or infinite values")
    k = max(1, int(round(keep * h * w)))
    tie = np.random.default_rng(seed).permutation(h * w)
    order = np.lexsort((tie, -m.ravel()))  # by saliency, descending; ties in a seeded random order
    mask = np.zeros(h * w, dtype=bool)
    mask[order[:k]] = True
    return torch.from_numpy(mask.reshape(h, w))


def _langevin(
    vae: nn.Module,
    targets: torch.Tensor,
    masks: torch.Tensor,
    n: int,
    steps: int,
    step_size: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """``(M, n, C, H, W)`` decoded posterior samples given each target's kept pixels ``(M, C, H, W)``."""
    m_count = targets.shape[0]
    latent = int(vae.latent_dim)
    z = torch.randn((m_count * n, latent), generator=gen)
    tgt = targets.repeat_interleave(n, dim=0)
    msk = masks.repeat_interleave(n, dim=0).to(tgt.dtype)
    for t in range(steps):
        eps = step_size * (0.1 ** (t / max(1, steps - 1)))  # anneal to a tenth
        z = z.detach().requires_grad_(True)
        logits = vae.decode_logits(z)
        nll = (F.binary_cross_entropy_with_logits(logits, tgt, reduction="none") * msk).flatten(1).sum(1)
        energy = nll + 0.5 * z.pow(2).sum(1)
        (grad,) = torch.autograd.grad(energy.sum(), z)
        z = z - eps * grad + math.sqrt(2.0 * eps) * torch.randn(z.shape, generator=gen)
    with torch.no_grad():
        out = vae.decode(z.detach())
    return out.view(m_count, n, *targets.shape[1:])


def _check_vae(model_of_data: Any, x: torch.Tensor) -> nn.Module:
    if not isinstance(model_of_data, nn.Module) or not hasattr(model_of_data, "decode_logits"):
        raise ValidationError(
            "model_of_data must be a generative model with decode_logits(z) and latent_dim, "
            "such as smug.methods.reconstruct.pretrained_vae()"
        )
    with torch.no_grad():
        probe = model_of_data.decode_logits(torch.zeros(1, int(model_of_data.latent_dim)))
    if tuple(probe.shape[1:]) != tuple(x.shape):
        raise ShapeError(
            f"the model of the data generates images of shape {tuple(probe.shape[1:])}, the input is {tuple(x.shape)}"
        )
    return model_of_data


def reconstruct(
    model_of_data: nn.Module,
    x: Any,
    saliency_map: Any,
    keep: float = 0.1,
    n: int = 16,
    *,
    steps: int = 100,
    step_size: float = 0.02,
    paste: bool = True,
    seed: int = 0,
    return_mask: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Variations of ``x`` drawn from the model of the data that keep its salient part.

    Args:
        model_of_data: a generative model with ``decode_logits(z)`` and
            ``latent_dim`` (:func:`pretrained_vae` for MNIST).
        x: one image ``(C, H, W)``, ``(H, W)`` or ``(1, C, H, W)`` in ``[0, 1]``.
        saliency_map: the map of ``x`` (any method's: SMUG, IG, the optimised
            mask ...); ``(H, W)`` or ``(C, H, W)``.
        keep: the fraction of pixels kept (the most salient), in ``(0, 1]``.
        n: variations drawn.
        steps: Langevin steps per variation.
        step_size: the first step's size (annealed to a tenth).
        paste: paste the kept pixels back into each variation (the salient part
            kept exactly); ``False`` returns the decoded images.
        seed: seeds the prior draws, the Langevin noise and the tie-break of the kept region.
        return_mask: also return the kept region.

    Returns:
        ``(n, C, H, W)`` float32 variations in ``[0, 1]`` (and the ``(H, W)`` kept region if ``return_mask``).

    Raises:
        ConfigError: ``keep`` outside ``(0, 1]``, or ``n``/``steps``/``step_size`` not positive.
        ShapeError: a map shaped unlike the input, or a model of the data that generates another shape.

    Example:
        >>> vae = pretrained_vae()
        >>> variations = reconstruct(vae, image, smug_map, keep=0.1, n=16)
        >>> (classifier(variations).argmax(1) == label).float().mean()  # the paper's accuracy
    """
    _check_keep(keep)
    for name, v in (("n", n), ("steps", steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(step_size, (int, float)) or not step_size > 0:
        raise ConfigError(f"step_size must be > 0, got {step_size!r}")
    img = _as_image(x)
    mask = keep_mask(saliency_map, keep, tuple(img.shape), seed=seed)
    vae = _check_vae(model_of_data, img)
    out = reconstruct_many(vae, img, mask.unsqueeze(0), n, steps=steps, step_size=step_size, paste=paste, seed=seed)
    return (out[0], mask) if return_mask else out[0]


def reconstruct_many(
    model_of_data: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    n: int,
    *,
    steps: int = 100,
    step_size: float = 0.02,
    paste: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """``(M, n, C, H, W)`` variations of one image ``x`` ``(C, H, W)`` for ``M`` kept regions ``(M, H, W)`` at once.

    The batched form of :func:`reconstruct` (one Langevin run for all regions);
    the study uses it.  Same arguments as :func:`reconstruct`.
    """
    was = model_of_data.training
    model_of_data.eval()
    try:
        gen = torch.Generator().manual_seed(int(seed))
        m = masks.to(torch.bool).unsqueeze(1).expand(-1, x.shape[0], -1, -1)
        targets = x.unsqueeze(0).expand(len(masks), *x.shape).contiguous()
        requires = [p.requires_grad for p in model_of_data.parameters()]
        for p in model_of_data.parameters():
            p.requires_grad_(False)
        try:
            out = _langevin(model_of_data, targets, m, n, steps, step_size, gen)
        finally:
            for p, r in zip(model_of_data.parameters(), requires):
                p.requires_grad_(r)
        if paste:
            out = torch.where(m.unsqueeze(1), targets.unsqueeze(1), out)
        return out.float()
    finally:
        model_of_data.train(was)
