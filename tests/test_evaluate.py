"""The comparison study runner on a tiny digits model: rows, resuming, tables, figure."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

import smug.zoo.demo
from smug.errors import ConfigError
from smug.study.evaluate import format_markdown, main, read_rows, run_image_study, summarise

FAST = {"optimised-mask": {"grid": 4, "steps": 40, "batch": 20}, "smug:ortools:cbc": {"top_k": 8, "gamma": 0.3}}
METHODS = ["smug:ortools:cbc", "pathwaygrad", "optimised-mask", "saliency"]


@pytest.fixture
def tiny_model(monkeypatch):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(192, 10)).eval()
    monkeypatch.setattr(smug.zoo.demo, "load_model", lambda spec, **kw: model)
    return model


def test_image_study_writes_rows_tables_and_figure(tiny_model, tmp_path):
    res = run_image_study(
        "tiny", n=3, methods=METHODS, dataset="digits", out_dir=tmp_path, progress=False,
        figure_inputs=2, method_options=FAST,
    )  # fmt: skip
    out = tmp_path / "tiny"
    assert len(res.rows) == 12 and not any(r.get("error") for r in res.rows)
    for r in res.rows:
        assert r["seconds"] >= 0 and 0 <= r["sparsity"] <= 1 and 0 <= r["insertion_auc"] <= 1
        assert r["box_area"] > 0 and np.isfinite(r["saliency_metric"])
    smug_rows = [r for r in res.rows if r["method"] == "smug:ortools:cbc"]
    assert all(r["sparsity_definition"] == "mask kept fraction" and "verified" in r for r in smug_rows)
    assert all(r["top_k"] == 8 for r in smug_rows)
    assert [s["method"] for s in res.summary] == METHODS and all(s["n"] == 3 for s in res.summary)
    assert "verified_fraction" in res.summary[0]
    assert all(len(r["insertion_curve"]) == len(r["deletion_curve"]) == 57 for r in res.rows)
    for name in ("rows.jsonl", "summary.csv", "summary.json", "summary.md", "figure.png", "curves.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "maps").rglob("*.npy"))) == 2 * len(METHODS)
    assert "saliency metric ↓" in (out / "summary.md").read_text()
    assert json.loads((out / "summary.json").read_text())[1]["method"] == "pathwaygrad"


def test_image_study_resumes_without_recomputing(tiny_model, tmp_path):
    run_image_study("tiny", n=2, methods=["saliency"], dataset="digits", out_dir=tmp_path, progress=False)
    folder = tmp_path / "tiny"
    first = read_rows(folder)
    db = sqlite3.connect(folder / "study.sqlite")
    with db:  # drop the last row, as an interrupted run would have left it
        db.execute("DELETE FROM records WHERE key = ?", (json.dumps(["tiny", "saliency", 1]),))
    db.close()
    res = run_image_study("tiny", n=3, methods=["saliency"], dataset="digits", out_dir=tmp_path, progress=False)
    rows = read_rows(folder)
    assert sorted(r["index"] for r in rows) == [0, 1, 2]
    assert rows[0] == first[0]  # kept, not recomputed
    assert len(res.rows) == 3 and res.paths["store"] == folder / "study.sqlite"
    again = run_image_study("tiny", n=3, methods=["saliency"], dataset="digits", out_dir=tmp_path, progress=False)
    assert len(read_rows(folder)) == 3 and len(again.rows) == 3
    assert len(read_rows(folder / "rows.jsonl")) == 3  # the export matches the store


def test_failing_method_gets_an_error_row(tiny_model, tmp_path):
    # a grid larger than the 8x8 digits: every input fails with a named error, the study goes on
    res = run_image_study(
        "tiny", n=2, methods=["optimised-mask", "saliency"], dataset="digits", out_dir=tmp_path,
        progress=False, method_options={"optimised-mask": {"grid": 12}},
    )  # fmt: skip
    errs = [r for r in res.rows if r.get("error")]
    assert len(errs) == 2 and all("grid 12 is larger" in r["error"] for r in errs)
    s = {x["method"]: x for x in res.summary}
    assert s["optimised-mask"]["errors"] == 2 and s["optimised-mask"]["n"] == 0
    assert s["saliency"]["n"] == 2
    assert "–" in format_markdown(res.summary)
    # a rerun retries the failed inputs (and only them)
    saliency_rows = [r for r in res.rows if r["method"] == "saliency"]
    again = run_image_study(
        "tiny", n=2, methods=["optimised-mask", "saliency"], dataset="digits", out_dir=tmp_path,
        progress=False, method_options={"optimised-mask": {"grid": 4, "steps": 20, "batch": 10}},
    )  # fmt: skip
    assert not any(r.get("error") for r in again.rows) and len(again.rows) == 4
    assert [r for r in again.rows if r["method"] == "saliency"] == saliency_rows


def test_smug_top_k_is_capped_at_the_first_layer(tiny_model, tmp_path):
    # the demo's top_k=200 exceeds the tiny model's 3 x 8 x 8 = 192 first-layer neurons
    res = run_image_study("tiny", n=1, methods=["smug:ortools:cbc"], dataset="digits", out_dir=tmp_path, progress=False)
    assert not res.rows[0].get("error") and res.rows[0]["top_k"] == 192


def test_study_bad_input(tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="unknown method"):
        run_image_study("tiny", n=2, methods=["lime"], dataset="digits", out_dir=tmp_path)
    with pytest.raises(ConfigError):
        run_image_study("tiny", n=0, dataset="digits", out_dir=tmp_path)
    assert summarise([]) == []


def test_command_line(tiny_model, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").write_bytes(b"")  # a model path must exist; load_model itself is the fixture's
    assert (
        main(
            [
                str(tmp_path / "models" / "tiny"),
                "--n",
                "2",
                "--methods",
                "saliency",
                "--dataset",
                "digits",
                "--out",
                str(tmp_path / "out"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "| saliency | 2 |" in capsys.readouterr().out
