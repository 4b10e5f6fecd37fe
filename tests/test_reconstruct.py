"""Salient-input reconstruction (smug.methods.reconstruct) and its study (smug.study.reconstruction)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from smug.errors import ConfigError, ShapeError, ValidationError
from smug.methods.reconstruct import keep_mask, pretrained_vae, reconstruct, vae_metrics
from smug.study.reconstruction import (
    format_reconstruction_markdown,
    run_reconstruction_study,
    summarise_reconstruction,
)
from smug.zoo.data import load_mnist


@pytest.fixture(scope="module")
def vae():
    return pretrained_vae(source="shipped")


@pytest.fixture(scope="module")
def digits():
    x, y = load_mnist("test")
    return torch.from_numpy(np.array(x[:4])), y[:4]


def test_the_same_seed_gives_the_same_variations_and_the_kept_part_is_kept_exactly(vae, digits):
    x = digits[0][0]
    smap = x[0]  # the stroke itself as the map
    a, mask = reconstruct(vae, x, smap, keep=0.1, n=6, steps=40, seed=3, return_mask=True)
    b = reconstruct(vae, x, smap, keep=0.1, n=6, steps=40, seed=3)
    c = reconstruct(vae, x, smap, keep=0.1, n=6, steps=40, seed=4)
    assert a.shape == (6, 1, 28, 28) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int(mask.sum()) == round(0.1 * 784)
    assert torch.equal(a[:, 0][:, mask], x[0][mask].expand(6, -1))  # pasted back, bit for bit
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0
    assert float((a[:, 0][:, ~mask] - a[0, 0][~mask]).abs().max()) > 0.05  # the variations vary
    raw = reconstruct(vae, x, smap, keep=0.1, n=6, steps=40, seed=3, paste=False)
    assert not torch.equal(raw[:, 0][:, mask], x[0][mask].expand(6, -1))


def test_keep_mask_takes_the_most_salient_pixels_and_breaks_ties_at_random():
    m = np.zeros((10, 10))
    m[7, 3], m[2, 8], m[5, 5] = 3.0, 2.0, 1.0
    mask = keep_mask(m, 0.03, (1, 10, 10))
    assert mask.sum() == 3 and mask[7, 3] and mask[2, 8] and mask[5, 5]
    tie = keep_mask(np.zeros((10, 10)), 0.1, (1, 10, 10), seed=0)
    assert tie.sum() == 10 and tie[:1].sum() < 10  # not the first row
    assert torch.equal(tie, keep_mask(np.zeros((10, 10)), 0.1, (1, 10, 10), seed=0))
    assert keep_mask(np.ones((3, 10, 10)), 0.001, (3, 10, 10)).sum() == 1  # at least one pixel; channels averaged


class _RegionClassifier(nn.Module):
    """Class 1 when the ink inside ``region`` is at least ``share`` of the reference image's, else class 0."""

    def __init__(self, region: torch.Tensor, ref: torch.Tensor, share: float) -> None:
        super().__init__()
        self.region, self.t = region, share * float(ref[0][region].sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0][:, self.region].sum(1)
        return torch.stack([self.t - s, s - self.t], dim=1)


def test_keeping_the_region_the_class_lives_in_keeps_the_class_more_often_than_a_random_region(vae, digits):
    x = digits[0][0]
    region = torch.zeros(28, 28, dtype=torch.bool)
    region[8:20, 8:20] = True
    region &= x[0] > 0.3  # the stroke inside the centre: the class lives there
    clf = _RegionClassifier(region, x, 0.9)
    assert int(clf(x.unsqueeze(0)).argmax()) == 1
    keep = float(region.sum()) / 784
    rows = run_reconstruction_study(
        clf, vae, x.unsqueeze(0), methods=["oracle"], keeps=[keep], n=32, steps=60,
        maps=lambda i, xx, pred: {"oracle": region.double().numpy()}, progress=False,
    )  # fmt: skip
    by = {r["method"]: r["kept_class"] for r in rows}
    assert by["oracle"] == 1.0  # the region kept exactly: the class cannot change
    assert by["random-pixels"] < by["oracle"] - 0.3 and by["random-patches"] < by["oracle"] - 0.3, by
    assert by["prior"] < 0.5, by  # nothing kept: the generator rarely draws that much ink there


def test_the_study_rows_controls_and_table(vae, digits):
    from smug.zoo.models import pretrained

    cnn = pretrained("mnist_cnn")
    x, _ = digits
    rows = run_reconstruction_study(
        cnn, vae, x[:2], methods=["stroke"], keeps=[0.1, 0.3], n=8, steps=60, indices=[10, 11],
        maps=lambda i, xx, pred: {"stroke": xx[0].numpy()}, progress=False,
    )  # fmt: skip
    assert len(rows) == 2 * (2 + 2 + 2 + 2)  # per input: the method and both random controls x 2 fractions, prior, full
    assert {r["index"] for r in rows} == {10, 11} and all(len(r["classes"]) == 8 for r in rows)
    summary = summarise_reconstruction(rows)
    got = {(r["method"], r["keep"]): r for r in summary}
    assert got[("full-image", 1.0)]["kept_class"] >= 0.75  # the generator reconstructs these digits
    assert got[("prior", 0.0)]["kept_class"] <= 0.5
    table = format_reconstruction_markdown(summary)
    assert table.splitlines()[0] == "| method | keep 10% | keep 30% |"
    assert [line.split(" |")[0] for line in table.splitlines()[2:]] == [
        "| stroke",
        "| random-pixels",
        "| random-patches",
        "| prior",
        "| full-image",
    ]


def test_the_study_on_real_maps_runs_a_registered_method(vae, digits):
    from smug.zoo.models import pretrained

    rows = run_reconstruction_study(
        pretrained("mnist_cnn"), vae, digits[0][:1], methods=["saliency"], keeps=[0.2], n=4, steps=20, progress=False
    )
    assert [r["method"] for r in rows] == ["saliency", "random-pixels", "random-patches", "prior", "full-image"]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda v, x: reconstruct(v, x, x[0], keep=0.0), ConfigError, "in (0, 1]"),
        (lambda v, x: reconstruct(v, x, x[0], keep=1.5), ConfigError, "in (0, 1]"),
        (lambda v, x: reconstruct(v, x, x[0], keep=True), ConfigError, "in (0, 1]"),
        (lambda v, x: reconstruct(v, x, x[0, :14], keep=0.1), ShapeError, "pass an (H, W) = (28, 28) map"),
        (lambda v, x: reconstruct(v, x, x[0], n=0), ConfigError, "n must be a positive integer"),
        (lambda v, x: reconstruct(v, x, x[0], step_size=0), ConfigError, "step_size"),
        (lambda v, x: reconstruct(nn.Linear(2, 2), x, x[0]), ValidationError, "pretrained_vae"),
        (lambda v, x: reconstruct(v, torch.zeros(1, 14, 14), torch.zeros(14, 14)), ShapeError, "generates images"),
        (lambda v, x: run_reconstruction_study(nn.Identity(), v, x[None], methods=["nope"]), ConfigError, "nope"),
        (
            lambda v, x: run_reconstruction_study(nn.Identity(), v, x[None], methods=["random-pixels"]),
            ConfigError,
            "controls",
        ),
        (lambda v, x: run_reconstruction_study(nn.Identity(), v, x[None], keeps=[2]), ConfigError, "in (0, 1]"),
    ],
)
def test_bad_input_is_a_named_error(vae, digits, call, error, words):
    with pytest.raises(error) as info:
        call(vae, digits[0][0])
    assert words in str(info.value)


def test_the_shipped_model_of_the_data_and_its_recorded_metrics(vae):
    m = vae_metrics()
    assert m["seed"] == 0 and m["latent_dim"] == vae.latent_dim
    assert 60 < m["test_reconstruction_bce_nats"] < 120  # a working MNIST VAE, not a blur of the mean digit
    was = [p.requires_grad for p in vae.parameters()]
    reconstruct(vae, torch.zeros(1, 28, 28), torch.zeros(28, 28), n=2, steps=2)
    assert [p.requires_grad for p in vae.parameters()] == was and not vae.training


def test_the_vae_loads_from_the_cache_as_from_the_package(vae, tmp_path, monkeypatch):
    import shutil

    from smug.zoo.shipped import shipped_file

    monkeypatch.setenv("SMUG_CACHE_DIR", str(tmp_path))
    shutil.copyfile(shipped_file("mnist_vae.pt"), tmp_path / "mnist_vae.pt")
    cached = pretrained_vae(source="cache")
    assert all(torch.equal(a, b) for a, b in zip(cached.state_dict().values(), vae.state_dict().values()))
    with pytest.raises(ValueError, match="source must be one of"):
        pretrained_vae(source="nowhere")


@pytest.mark.slow
def test_retraining_the_vae_reproduces_the_recorded_metrics(request):
    from smug.methods.reconstruct import train_vae

    markexpr = str(request.config.getoption("markexpr", "") or "")
    if os.environ.get("SMUG_RUN_SLOW") != "1" and not ("slow" in markexpr and "not slow" not in markexpr):
        pytest.skip("full training (about 3 minutes); set SMUG_RUN_SLOW=1 or select with -m slow")

    _, metrics = train_vae(progress=False)
    want = vae_metrics()
    assert abs(metrics["test_neg_elbo_nats"] - want["test_neg_elbo_nats"]) < 0.5
