"""The smug command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import smug
from smug.cli import main


def test_backends_lists_every_backend_with_status(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "pysmt:msat" in out and "pysmt-install --msat" in out
    for name in ("z3", "ortools:scip", "ortools:cpsat", "pysmt:cvc5"):
        assert name in out
    assert main(["backends", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"z3", "pysmt:msat", "ortools:highs"}


def test_solve_and_export_a_problem_file(tmp_path, capsys):
    b = smug.ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 2.0, 0.5]], ">=", [2.0], strict=[True], margin=[1e-6])
    b.set_objective(m, 1.0)
    path = tmp_path / "p.json"
    b.build().to_json(str(path))
    out = tmp_path / "sol.json"
    capsys.readouterr()
    assert main(["solve", str(path), "--backend", "z3", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["objective"] == 2.0
    printed = capsys.readouterr().out
    assert "optimal" in printed and "mask: 2 of 3 kept: [" in printed  # the mask, without -o too
    assert main(["export", str(path), "--format", "smt2"]) == 0
    assert "(minimize" in capsys.readouterr().out
    for ext, marker in (("mps", "ROWS"), ("lp", "Subject To"), ("smt2", "(minimize")):
        assert main(["export", str(path), "-o", str(tmp_path / f"p.{ext}")]) == 0  # the format from the extension
        assert marker in (tmp_path / f"p.{ext}").read_text()
    assert main(["export", str(path), "-o", str(tmp_path / "p.txt")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["solve", str(path), "--backend", "nope"]) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_explain_with_a_config_file(tmp_path):
    from smug.zoo.data import load_digits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
    X, y = load_digits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X[:500]), torch.tensor(y[:500])
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    torch.save(model.eval(), tmp_path / "model.pt")
    cfg = tmp_path / "smug.toml"
    cfg.write_text(
        f'backend = "ortools:cpsat"\ntop_k = 20\ngamma = 0.2\n[input]\nmodel = "{tmp_path / "model.pt"}"\n'
        'dataset = "digits"\nindices = [0, 3]\n'
    )
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "smug.cli", "explain", "--config", str(cfg), "--out", str(out), "--trust-pickle"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "optimal" in r.stdout and "True" in r.stdout
    assert (out / "explanation_00000.png").stat().st_size > 5000
    # top_k = 20 > the 12 neurons: capped, with a warning about the setting, not a line of smug's code
    assert "smug: warning: top_k=20 exceeds the first layer's 12 neurons" in r.stderr, r.stderr
    assert ".py:" not in r.stderr
    assert json.loads((out / "explanation_00003.json").read_text())["verified"]
    bad = tmp_path / "bad.toml"
    bad.write_text("topk = 3\n")
    r = subprocess.run(
        [sys.executable, "-m", "smug.cli", "explain", "--config", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "Did you mean 'top_k'" in r.stderr


@pytest.mark.timeout_heavy
def test_demo_runs_end_to_end(tmp_path):
    # the README's main command (trains and caches the reference CNN on first use)
    r = subprocess.run(
        [sys.executable, "-m", "smug.cli", "demo", "-n", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("optimal") == 2
    assert (tmp_path / "explanation_00001.png").exists()
    assert "explaining:" not in r.stderr and "%|" not in r.stderr  # no progress bar when stderr is not a terminal


def test_explain_raw_text_with_a_saved_text_model(tmp_path):
    from smug.zoo.text import TextCNN, Vocabulary

    vocab = Vocabulary.build(["a good film", "a bad film , truly bad", "good acting and a good plot"])
    torch.manual_seed(0)
    model = TextCNN(len(vocab), embed_dim=8, n_filters=10, class_names=("rotten", "fresh")).eval()
    torch.save(model, tmp_path / "text.pt")
    vocab.save(tmp_path / "vocab.json")
    cfg = tmp_path / "text.toml"
    cfg.write_text(
        f'top_k = 4\ngamma = 0.3\n[input]\nmodel = "{tmp_path / "text.pt"}"\nvocab = "{tmp_path / "vocab.json"}"\n'
        'texts = ["a good film", "truly bad acting"]\n'
    )
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "smug.cli", "explain", "--config", str(cfg), "--out", str(out), "--trust-pickle"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("optimal") == 2 and "#1: " in r.stdout and "[" in r.stdout
    page = (out / "text_explanations.html").read_text()
    assert page.count("<h2>") == 2 and "truly" in page
    assert json.loads((out / "text_explanation_00001.json").read_text())["tokens"] == ["truly", "bad", "acting"]
    cfg.write_text(f'[input]\nmodel = "{tmp_path / "text.pt"}"\ntexts = ["a good film"]\n')
    r = subprocess.run(
        [sys.executable, "-m", "smug.cli", "explain", "--config", str(cfg)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2 and "needs its vocabulary" in r.stderr


@pytest.mark.timeout_heavy
def test_text_demo_runs_end_to_end(tmp_path):
    # the shipped text CNN: no training
    r = subprocess.run(
        [sys.executable, "-m", "smug.cli", "demo", "--text", "-n", "3", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("optimal") == 3 and "#2: " in r.stdout
    assert (tmp_path / "text_explanations.html").read_text().count("<h2>") == 3
    explain = [sys.executable, "-m", "smug.cli", "explain", "--text", "a gorgeous , witty film", "--out", str(tmp_path)]
    r = subprocess.run(explain, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "already holds 4 file(s)" in r.stderr and "--force" in r.stderr  # nothing overwritten
    r = subprocess.run(explain + ["--force"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fresh" in r.stdout and "optimal" in r.stdout
    # text gets the text demo's settings (top_k=30, gamma=0.5), not the image defaults' 1-token masks
    assert "top_k=30 gamma=0.5" in r.stdout


def test_demo_config_is_capped_at_the_first_layer_size():
    from smug.zoo.demo import DEMO_CONFIG, capped_config

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))
    x = np.zeros((1, 8, 8), dtype=np.float32)
    assert capped_config(mlp, x, DEMO_CONFIG).top_k == 12
    with pytest.warns(UserWarning, match="top_k=200 exceeds the first layer's 12 neurons; using top_k=12"):
        assert capped_config(mlp, x, DEMO_CONFIG, warn=True).top_k == 12
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 10))
    assert capped_config(cnn, x, DEMO_CONFIG) is DEMO_CONFIG  # 288 neurons >= 200


def test_explain_network_command(tmp_path):
    from smug.zoo.data import load_digits

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 10))
    X, y = load_digits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X[:500]), torch.tensor(y[:500])
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(Xt), yt).backward()
        opt.step()
    torch.save(model.eval(), tmp_path / "mlp.pt")
    base = [sys.executable, "-m", "smug.cli", "explain-network", "--model", str(tmp_path / "mlp.pt"), "--trust-pickle"]
    base += ["--dataset", "digits", "--indices", "0", "5", "--out", str(tmp_path / "out"), "--time-limit", "60"]
    r = subprocess.run(base, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("cardinality") >= 2 and "True" in r.stdout
    data = json.loads((tmp_path / "out" / "network_00005.json").read_text())
    assert data["verified"]
    r = subprocess.run(
        base + ["--masking", "robust", "--minimality", "subset", "--window", "2", "--force"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("subset") >= 2


def test_every_subcommand_help_shows_its_defaults(capsys):
    import pytest

    for cmd in (["explain-network"], ["solve"], ["study", "run"]):
        with pytest.raises(SystemExit):
            main([*cmd, "--help"])
        out = capsys.readouterr().out
        assert "(default:" in out, cmd
    with pytest.raises(SystemExit):
        main(["explain-network", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: batched)" in out and "(default: occlusion)" in out and "(default: mnist_mlp)" in out
