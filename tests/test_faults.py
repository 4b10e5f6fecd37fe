"""Fault injection: the study store under kills, torn writes, a full disk and a second writer; solver children
under a stuck solver, a dying solver, a slow import and a killed parent.  Nothing lost, nothing duplicated,
nothing left running."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import smug
import smug.solving.registry as registry
import smug.study.evaluate as ev
import smug.zoo.demo
from smug.errors import ConfigError
from smug.ir import ProblemBuilder
from smug.solving.contract import Status
from smug.study.evaluate import read_rows, run_image_study, study_lock
from smug.study.store import Store
from smug.testing.processes import process_gone
from smug.testing.reference import EnumerationBackend, StuckBackend

ROOT = Path(__file__).resolve().parents[1]


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(192, 10)).eval()


@pytest.fixture
def tiny_model(monkeypatch):
    model = tiny()
    monkeypatch.setattr(smug.zoo.demo, "load_model", lambda spec, **kw: model)
    return model


def study(out: Path, n: int = 4, methods=("saliency", "occlusion")):
    return run_image_study(
        "tiny", n=n, methods=list(methods), dataset="digits", out_dir=out, progress=False, figure_inputs=1
    )


def keys(folder: Path) -> list[tuple]:
    """Every stored row's key, straight from the store's table (duplicates would show)."""
    db = sqlite3.connect(folder / "study.sqlite")
    try:
        return [tuple(json.loads(k)) for (k,) in db.execute("SELECT key FROM records WHERE kind = 'evaluate'")]
    finally:
        db.close()


# ------------------------------------------------------------------ the study store
def test_a_second_study_on_the_same_folder_is_refused_at_once(tiny_model, tmp_path):
    with study_lock(tmp_path / "tiny"):
        with pytest.raises(ConfigError, match=rf"another study \(pid {os.getpid()}\) is writing to"):
            study(tmp_path)
    res = study(tmp_path)  # the lock is free again
    assert len(res.rows) == 8


def test_sequential_reruns_never_duplicate_rows(tiny_model, tmp_path):
    for _ in range(3):
        res = study(tmp_path)
    k = keys(tmp_path / "tiny")
    assert len(k) == len(set(k)) == 8
    assert [s["n"] for s in res.summary] == [4, 4]
    exported = (tmp_path / "tiny" / "rows.jsonl").read_text().splitlines()
    assert sorted((r["model"], r["method"], r["index"]) for r in map(json.loads, exported)) == sorted(k)


def test_an_older_folder_with_a_torn_line_and_duplicates_is_imported_repaired(tiny_model, tmp_path):
    study(tmp_path)
    folder = tmp_path / "tiny"
    lines = (folder / "rows.jsonl").read_text().splitlines()
    (folder / "study.sqlite").unlink()  # what an older version left: rows.jsonl only
    for extra in ("study.sqlite-wal", "study.sqlite-shm"):
        (folder / extra).unlink(missing_ok=True)
    # a racing writer's duplicate of row 0, then a torn half of row 2 (a crash mid-write)
    (folder / "rows.jsonl").write_text(
        "\n".join([lines[0], lines[1], lines[0], lines[3], lines[4], lines[5], lines[6], lines[7]])
        + "\n"
        + lines[2][: len(lines[2]) // 2]
    )
    res = study(tmp_path)
    k = keys(folder)
    assert sorted(k) == sorted(set(k)) and len(k) == 8  # 7 imported, the torn one recomputed
    assert [s["n"] for s in res.summary] == [4, 4]
    assert {json.dumps(r, sort_keys=True) for r in map(json.loads, lines[:2])} <= {
        json.dumps(r, sort_keys=True) for r in read_rows(folder)
    }  # imported rows kept as they were, not recomputed


def test_a_full_disk_loses_nothing_written_and_the_rerun_completes(tiny_model, tmp_path, monkeypatch):
    real = Store.put_record
    calls = {"n": 0}

    def full_after_three(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] > 3:  # the fourth row: SQLite rolls its transaction back, as on a full disk
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *args, **kw)

    monkeypatch.setattr(Store, "put_record", full_after_three)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        study(tmp_path)
    assert len(read_rows(tmp_path / "tiny")) == 3  # what was committed is intact
    monkeypatch.setattr(Store, "put_record", real)
    res = study(tmp_path)
    k = keys(tmp_path / "tiny")
    assert len(k) == len(set(k)) == 8 and len(res.rows) == 8


def test_a_failed_row_is_retried_and_replaced_but_a_good_row_never_is(tmp_path):
    with Store(tmp_path) as store:
        assert store.put_record("k", "a", {"v": 1, "error": "boom"}, failed=True)
        assert store.put_record("k", "a", {"v": 2, "error": "again"}, failed=True)
        assert store.record_keys("k", failed=True) == {"a"}
        assert store.put_record("k", "a", {"v": 3})
        assert not store.put_record("k", "a", {"v": 4})
        assert not store.put_record("k", "a", {"v": 5, "error": "late"}, failed=True)
        assert store.records("k") == [{"v": 3}] and store.record_keys("k") == {"a"}
        with pytest.raises(ValueError):
            store.put_record("k", "b", {"v": float("nan")})  # never a NaN a JSON reader chokes on
        assert store.records("k") == [{"v": 3}]


def test_a_failing_summary_write_leaves_the_old_summary(tiny_model, tmp_path, monkeypatch):
    study(tmp_path)
    summary = tmp_path / "tiny" / "summary.json"
    before = summary.read_text()

    def broken(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ev.Path, "write_text", broken)
    with pytest.raises(OSError):
        study(tmp_path, n=5)
    monkeypatch.undo()
    assert summary.read_text() == before  # atomic: the old file, never a half-written one


_STUDY_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    import smug.zoo.demo
    from smug.study.evaluate import run_image_study
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(192, 10)).eval()
    smug.zoo.demo.load_model = lambda spec, **kw: model
    run_image_study("tiny", n=int(sys.argv[2]), methods=["saliency", "occlusion"], dataset="digits",
                    out_dir=sys.argv[1], progress=False, figure_inputs=2)
    """
)


def test_kill_9_at_random_points_then_rerun_loses_and_duplicates_nothing(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(_STUDY_SCRIPT)
    out, n = tmp_path / "out", 80
    rows_file = out / "tiny"
    rng = random.Random(12)
    cmd = [sys.executable, str(script), str(out), str(n)]
    counts = []
    for _ in range(2):
        before = len(read_rows(rows_file))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 120
        while len(read_rows(rows_file)) <= before and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)  # until this run has written a row of its own
        time.sleep(rng.uniform(0.0, 0.1))  # rows come at a few hundred per second
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        counts.append(len(read_rows(rows_file)))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    k = keys(rows_file)
    assert len(k) == len(set(k)) == 2 * n
    assert sqlite3.connect(rows_file / "study.sqlite").execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert 0 < counts[0] < counts[-1] < 2 * n, counts  # the kills landed mid-study and each run resumed
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    assert [s["n"] for s in summary] == [n, n]


# ------------------------------------------------------------------ solver children
def problem():
    b = ProblemBuilder()
    m = b.add_mask(4)
    b.add_rows([[1.0, 1.0, 1.0, 1.0]], ">=", [2.0])
    b.set_objective(m, 1.0)
    return b.build()


def test_a_stuck_solver_is_stopped_at_the_hard_limit_and_cleaned_up(tmp_path):
    pid_file = tmp_path / "pid"
    t0 = time.monotonic()
    sol = smug.solve(problem(), StuckBackend(pid_file=str(pid_file)), time_limit=0.5)
    elapsed = time.monotonic() - t0
    assert sol.status == Status.TIMEOUT and sol.stats.get("killed") and "hard time limit" in sol.message
    assert elapsed < 0.5 + smug.solving.deadline.grace_seconds(0.5) + 5.0  # stopped, not waited for
    assert process_gone(int(pid_file.read_text()))


def test_a_dying_solver_is_an_error_status_not_a_crash(tmp_path):
    pid_file = tmp_path / "pid"
    sol = smug.solve(problem(), StuckBackend(pid_file=str(pid_file), die=True), time_limit=30)
    assert sol.status == Status.ERROR and "died (exit code 3)" in sol.message
    assert process_gone(int(pid_file.read_text()))


_PARENT_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    import smug
    from test_faults import StuckBackend, problem
    smug.solve(problem(), StuckBackend(pid_file=sys.argv[1]), time_limit=120)
    """
)


def test_the_solver_child_dies_with_its_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT_SCRIPT)
    pid_file = tmp_path / "pid"
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file), str(Path(__file__).parent)])
    try:
        end = time.monotonic() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < end, "the solve never started"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert not process_gone(child, within=0.2)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert process_gone(child), "the solver child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


class SlowImport(EnumerationBackend):
    """Its first ``version()`` (the import) takes 2 s, as a cold ``import ortools`` can."""

    imported = False

    def version(self):
        if not SlowImport.imported:
            time.sleep(2.0)
            SlowImport.imported = True
        return "1"


def register(monkeypatch, name, factory):
    """Register a test backend for this test only (other tests iterate over every registered name)."""
    monkeypatch.setitem(registry._REGISTERED, name, factory)


def test_the_time_limit_bounds_the_import_too(monkeypatch):
    SlowImport.imported = False
    register(monkeypatch, "test:slow-import", lambda name="test:slow-import", **o: SlowImport(name=name, **o))
    t0 = time.monotonic()
    sol = smug.solve(problem(), "test:slow-import", time_limit=0.2)
    assert time.monotonic() - t0 < 1.9  # returned before the import finished
    assert sol.status == Status.TIMEOUT and "importing the test:slow-import solver" in sol.message
    time.sleep(2.2)  # the import finished in the background: the next call finds it done
    again = smug.solve(problem(), "test:slow-import", time_limit=10)
    assert again.status == Status.OPTIMAL and again.objective == 2.0


def test_a_call_after_a_late_import_waits_for_it_within_its_own_limit(monkeypatch):
    SlowImport.imported = False
    register(monkeypatch, "test:slow-import", lambda name="test:slow-import", **o: SlowImport(name=name, **o))
    first = smug.solve(problem(), "test:slow-import", time_limit=0.2)
    assert first.status == Status.TIMEOUT
    second = smug.solve(problem(), "test:slow-import", time_limit=0.2)  # the import still runs: no fork now
    assert second.status == Status.TIMEOUT and "earlier call's import" in second.message
    third = smug.solve(problem(), "test:slow-import", time_limit=10)  # waits for it, then solves
    assert third.status == Status.OPTIMAL


def test_rows_survive_a_solver_child_dying_inside_the_study(tiny_model, tmp_path, monkeypatch):
    register(
        monkeypatch, "test:dies", lambda name="test:dies", **o: StuckBackend(pid_file=str(tmp_path / "pid"), die=True)
    )
    res = run_image_study(
        "tiny",
        n=2,
        methods=["smug:test:dies", "saliency"],
        dataset="digits",
        out_dir=tmp_path,
        progress=False,
        figure_inputs=1,
        method_options={"smug:test:dies": {"top_k": 4, "gamma": 0.3, "time_limit": 20}},
    )
    by_method = {(r["method"], r["index"]): r for r in res.rows}
    assert len(by_method) == 4 and all(not by_method[("saliency", i)].get("error") for i in range(2))
    for i in range(2):
        row = by_method[("smug:test:dies", i)]
        assert row.get("error") or row.get("status") == "error" or not row.get("verified", True)
    assert np.isfinite([by_method[("saliency", i)]["saliency_metric"] for i in range(2)]).all()
