"""Comparison studies: the spec, the crash-safe store, local and Dask runs, kills and resumes, scoring, reports."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smug.cli import main
from smug.errors import ConfigError, UnknownBackendError
from smug.ir import Problem
from smug.study.instances import expand, problem_hash, write_library
from smug.study.report import score, vbs, write_report, wrong_answers
from smug.study.runner import cells_of, run_cell, run_study, study_status
from smug.study.spec import load_spec, spec_from_dict
from smug.study.store import STORE_NAME, Store

MINIMAL = 'problems = ["{glob}"]\nbackends = ["ortools:highs", "z3"]\ntime_limit = 5\nseeds = [0]\n'


@pytest.fixture
def library(tmp_path: Path) -> Path:
    spec = spec_from_dict({"problems": [{"source": "synthetic", "n": 4}], "backends": ["z3"], "time_limit": 5})
    write_library(expand(spec.problems), tmp_path / "lib")
    return tmp_path / "lib"


# ----------------------------------------------------------------- the spec
def test_the_minimal_spec_and_a_full_spec_round_trip(tmp_path, library):
    (tmp_path / "min.toml").write_text(MINIMAL.format(glob="lib/*/*.json"))
    spec = load_spec(tmp_path / "min.toml")
    assert [b.key for b in spec.backends] == ["ortools:highs", "z3"] and spec.time_limit == 5
    assert len(expand(spec.problems)) == 4
    full = spec_from_dict(
        {
            "name": "enc",
            "problems": [{"glob": str(library / "*" / "*.json"), "family": "mine"}, {"source": "synthetic", "n": 2}],
            "backends": [{"name": "z3", "label": "z3-pb", "options": {"encoding": "pb"}}, "ortools:cpsat"],
            "time_limit": 2.5,
            "seeds": [0, 1],
            "threads": 1,
            "memory_limit": 1024,
        }
    )
    (tmp_path / "full.toml").write_text(full.to_toml())
    back = load_spec(tmp_path / "full.toml")
    assert back.to_dict() == full.to_dict() and back.digest() == full.digest()


@pytest.mark.parametrize(
    "data, error, fragment",
    [
        ({"problems": ["x"], "backends": ["z3"], "time_limt": 5}, ConfigError, "did you mean 'time_limit'"),
        ({"problems": [{"source": "synthetc", "n": 2}], "backends": ["z3"], "time_limit": 5}, ConfigError,
         "did you mean 'synthetic'"),
        ({"problems": [{"source": "synthetic", "n": 2, "sed": 1}], "backends": ["z3"], "time_limit": 5},
         ConfigError, "did you mean 'seed'"),
        ({"problems": [{"source": "synthetic", "n": 0}], "backends": ["z3"], "time_limit": 5}, ConfigError, ".n must"),
        ({"problems": ["x"], "backends": ["z4"], "time_limit": 5}, UnknownBackendError, "z3"),
        ({"problems": ["x"], "backends": [{"name": "z3", "opts": {}}], "time_limit": 5}, ConfigError, "'options'"),
        ({"problems": ["x"], "backends": ["z3", "z3"], "time_limit": 5}, ConfigError, "share the label"),
        ({"problems": ["x"], "backends": [{"name": "z3", "options": {"presolve": "no"}}], "time_limit": 5},
         ConfigError, "options.presolve must be true or false"),
        ({"problems": ["x"], "backends": [{"name": "z3", "options": {"presolv": False}}], "time_limit": 5},
         Exception, "presolv"),
        ({"problems": ["x"], "backends": ["z3"], "time_limit": -1}, ConfigError, "time_limit"),
        ({"problems": ["x"], "backends": ["z3"], "time_limit": 5, "seeds": [0, 0]}, ConfigError, "duplicates"),
        ({"problems": [], "backends": ["z3"], "time_limit": 5}, ConfigError, "at least one"),
        ({"backends": ["z3"], "time_limit": 5}, ConfigError, "needs 'problems'"),
        ({"problems": [{"source": "synthetic", "n": 2, "backends": ["z3"]}], "time_limit": 5}, ConfigError,
         "top-level keys go before the first table"),
    ],
)  # fmt: skip
def test_a_bad_spec_is_a_named_error(data, error, fragment):
    with pytest.raises(error) as info:
        spec_from_dict(data)
    assert fragment in str(info.value)


def test_solve_options_of_a_backend_entry_reach_smug_solve(library, monkeypatch, tmp_path):
    import smug

    seen = []
    real = smug.solve

    def spy(problem, backend, **kw):
        seen.append((type(backend).__name__, kw.get("presolve"), kw.get("cuts"), getattr(backend, "encoding", None)))
        return real(problem, backend, **kw)

    monkeypatch.setattr(smug, "solve", spy)
    spec = spec_from_dict(
        {
            "problems": [str(library / "*" / "*.json")],
            "backends": [{"name": "z3", "options": {"encoding": "int", "presolve": False, "cuts": False}}],
            "time_limit": 5,
        }
    )
    (cell,) = cells_of(spec, expand(spec.problems))[:1]
    out = run_cell(cell.task)
    assert out["status"] == "optimal" and out["verified"], out
    assert seen == [("Z3Backend", False, False, "int")]
    spec1 = spec_from_dict({**spec.to_dict(), "problems": [{"source": "synthetic", "n": 1}]})
    res = run_study(spec1, tmp_path / "s", workers=1, progress=False, log=lambda s: None)  # run_study accepts it
    assert res.ran == 1
    assert spec.backends[0].key == "z3[cuts=False,encoding=int,presolve=False]"


def test_a_glob_that_matches_nothing_is_named(tmp_path):
    (tmp_path / "s.toml").write_text(MINIMAL.format(glob="nothing/*.json"))
    with pytest.raises(ConfigError, match="matches no file"):
        load_spec(tmp_path / "s.toml")


# ----------------------------------------------------------------- instances
def test_the_library_holds_every_format_and_reads_back(library):
    rows = (library / "instances.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("name,family,hash")
    for line in rows[1:]:
        name, family, h = line.split(",")[:3]
        p = Problem.from_json(str(library / family / f"{name}.json"))
        assert problem_hash(p) == h
        assert "\nENDATA" in (library / family / f"{name}.mps").read_text()
        assert "(check-sat)" in (library / family / f"{name}.smt2").read_text()


# ----------------------------------------------------------------- scoring
def _cell(label, problem, status, wall, objective=None, verified=True, seed=0):
    return {
        "key": f"{label}/{problem}/{seed}",
        "label": label,
        "problem": problem,
        "name": problem,
        "family": "f",
        "seed": seed,
        "status": status,
        "wall": wall,
        "exact_objective": objective,
        "verified": verified if status in ("optimal", "feasible") else None,
        "cpu": 0.0,
        "peak_mb": 1.0,
    }


HAND = [
    _cell("a", "p1", "optimal", 1.0, "3"),
    _cell("a", "p2", "timeout", 10.0),
    _cell("a", "p3", "infeasible", 2.0),
    _cell("b", "p1", "optimal", 4.0, "3"),
    _cell("b", "p2", "optimal", 6.0, "5"),
    _cell("b", "p3", "timeout", 10.0),
    _cell("c", "p1", "optimal", 0.5, "4"),  # wrong: a proven optimum of 3 exists
    _cell("c", "p2", "feasible", 10.0, "7", verified=False),  # wrong: not exactly feasible
    _cell("c", "p3", "optimal", 0.1, "1"),  # wrong: a and b ... a proved p3 infeasible: contradiction both ways
]


def test_scores_on_a_hand_computed_case():
    wrong = {(w["label"], w["problem"]) for w in wrong_answers(HAND)}
    assert ("c", "p1") in wrong and ("c", "p2") in wrong
    assert ("a", "p3") in wrong  # claims infeasible while c has a verified solution of p3
    s = {r["label"]: r for r in score(HAND, time_limit=5.0)}
    # a: p1 solved in 1.0; p2 unsolved (10); p3 wrong (10) -> PAR-2 = (1 + 10 + 10) / 3
    assert s["a"]["solved"] == 1 and s["a"]["wrong"] == 1 and s["a"]["par2"] == pytest.approx(7.0)
    # b: p1 4.0, p2 6.0, p3 unsolved 10 -> 20 / 3
    assert s["b"]["solved"] == 2 and s["b"]["wrong"] == 0 and s["b"]["par2"] == pytest.approx(20 / 3)
    assert s["c"]["wrong"] == 2 and s["c"]["solved"] == 1  # only p3's claim stands (nothing proves it wrong)
    assert (s["a"]["best"], s["b"]["best"], s["c"]["best"]) == (1, 2, 1)  # verified and best on that problem
    assert [r["label"] for r in score(HAND, 5.0)][0] == "c"  # the backend with wrong answers is listed first
    v = vbs(HAND, time_limit=5.0)
    # p1: fastest correct is a (1.0; c's 0.5 is wrong); p2: b 6.0; p3: c 0.1
    assert v["solved"] == 3 and v["par2"] == pytest.approx((1.0 + 6.0 + 0.1) / 3)


# ----------------------------------------------------------------- running
def _spec(library: Path, **kw):
    d = {"problems": [str(library / "*" / "*.json")], "backends": ["z3", "ortools:cpsat"], "time_limit": 10}
    d.update(kw)
    return spec_from_dict(d)


def test_a_local_run_resumes_and_every_answer_agrees(library, tmp_path):
    out = tmp_path / "study"
    res = run_study(_spec(library), out, workers=2, progress=False, log=lambda s: None)
    assert (res.total, res.ran, res.already_done) == (8, 8, 0)
    again = run_study(_spec(library), out, workers=2, progress=False, log=lambda s: None)
    assert (again.ran, again.already_done) == (0, 8)
    with Store(out) as store:
        cells = store.cells()
    assert len(cells) == 8 and all(c["status"] == "optimal" and c["verified"] for c in cells)
    assert not wrong_answers(cells)
    by_problem: dict[str, set] = {}
    for c in cells:
        by_problem.setdefault(c["problem"], set()).add(c["exact_objective"])
        assert c["wall"] > 0 and c["cpu"] is not None and c["peak_mb"] > 0 and c["version"] and c["host"]
    assert all(len(v) == 1 for v in by_problem.values())  # the two backends agree exactly
    paths = write_report(out)
    assert "None: every answer agrees" in paths["md"].read_text()
    assert "data:image/png;base64" in paths["html"].read_text()
    assert {p.name for p in out.iterdir()} <= {
        STORE_NAME,
        f"{STORE_NAME}-wal",
        f"{STORE_NAME}-shm",
        "report.md",
        "report.html",
        "cactus.png",
        "scatter.png",
        "families.png",
    }


def test_the_same_study_on_a_dask_local_cluster(library, tmp_path):
    pytest.importorskip("dask.distributed")
    local = run_study(_spec(library), tmp_path / "local", workers=1, progress=False, log=lambda s: None)
    dask = run_study(_spec(library), tmp_path / "dask", dask_local=2, progress=False, log=lambda s: None)
    assert local.ran == dask.ran == 8
    with Store(tmp_path / "local") as a, Store(tmp_path / "dask") as b:
        ca = {c["key"]: c["exact_objective"] for c in a.cells()}
        cb = {c["key"]: c["exact_objective"] for c in b.cells()}
    assert ca == cb


_DIE_ONCE_MARKER = "die_once_marker"


def die_once_cell(task):
    """A cell function whose first call kills its own worker process (a worker lost mid-cell)."""
    marker = Path(task[_DIE_ONCE_MARKER])
    if not marker.exists():
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return run_cell(task)


def test_a_worker_killed_mid_cell_is_replaced_and_the_cell_retried(library, tmp_path):
    from smug.study.runner import _run_local

    spec = _spec(library, backends=["z3"])
    cells = cells_of(spec, expand(spec.problems))
    for c in cells:
        c.task[_DIE_ONCE_MARKER] = str(tmp_path / "died")
    got = {}
    _run_local(cells, 1, lambda c, r: got.__setitem__(c.key, r), fn=die_once_cell)
    assert (tmp_path / "died").exists()
    assert set(got) == {c.key for c in cells} and all(r["status"] == "optimal" for r in got.values())
    assert max(r["attempts"] for r in got.values()) == 2  # the lost cell ran again, in a new worker


def _run_cli(spec_path: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "smug.cli", "study", "run", str(spec_path), "--out", str(out), "--workers", "1",
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _count(out: Path) -> int:
    try:
        with sqlite3.connect(out / STORE_NAME, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_of_the_runner_mid_study_then_resume(tmp_path):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(
        'backends = ["z3", "ortools:cpsat"]\ntime_limit = 10\n[[problems]]\nsource = "synthetic"\nn = 12\n'
        "sizes = [[16, 8], [49, 12]]\n"
    )
    out = tmp_path / "study"
    proc = _run_cli(spec_path, out)
    end = time.monotonic() + 180
    while _count(out) < 3 and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    proc.kill()  # SIGKILL of the runner
    proc.wait()
    partial = _count(out)
    assert 0 < partial < 24
    st = study_status(out)
    assert st["running"] >= 1  # the killed run's in-flight claims are still there
    again = _run_cli(spec_path, out)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-2000:]
    with Store(out) as store:
        keys = [c["key"] for c in store.cells()]
    assert len(keys) == len(set(keys)) == 24
    assert study_status(out)["running"] == 0


def test_two_concurrent_runs_on_one_store_share_the_cells(tmp_path):
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(
        'backends = ["z3"]\ntime_limit = 10\n[[problems]]\nsource = "synthetic"\nn = 10\nsizes = [[16, 8], [49, 12]]\n'
    )
    out = tmp_path / "study"
    a, b = _run_cli(spec_path, out), _run_cli(spec_path, out)
    ra, rb = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, (ra[1][-1000:], rb[1][-1000:])
    ran = [int(r[0].split(" cells run")[0].split()[-1]) for r in (ra, rb)]
    assert sum(ran) == 10, (ran, ra[0], rb[0])  # every cell ran exactly once, between the two
    with Store(out) as store:
        assert len(store.cells()) == 10


def test_claims_of_a_live_run_are_respected_and_a_dead_runs_are_taken_over(tmp_path):
    with Store(tmp_path) as first, Store(tmp_path) as second:
        mine, others = first.claim(["k1", "k2"], stale_after=600)
        assert mine == ["k1", "k2"] and not others
        mine2, others2 = second.claim(["k1", "k2", "k3"], stale_after=600)
        assert mine2 == ["k3"] and set(others2) == {"k1", "k2"}
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        first.db.execute("UPDATE claims SET pid = ? WHERE key = 'k1'", (dead.pid,))
        mine3, _ = second.claim(["k1", "k2"], stale_after=600)
        assert mine3 == ["k1"]  # its run is dead: taken over; k2's run lives
        cell = {"key": "k1", "problem": "h", "backend": "z3", "label": "z3", "options": "{}", "seed": 0}
        assert second.record({**cell, "status": "optimal"})
        assert not first.record({**cell, "status": "optimal"})  # never twice


def test_export_csv_and_parquet(library, tmp_path):
    out = tmp_path / "study"
    run_study(_spec(library, backends=["z3"]), out, workers=1, progress=False, log=lambda s: None)
    with Store(out) as store:
        csv_path = store.export(tmp_path / "cells.csv")
        assert len(csv_path.read_text().splitlines()) == 5
        try:
            import pyarrow.parquet as pq
        except ImportError:
            with pytest.raises(ConfigError, match="pip install pyarrow"):
                store.export(tmp_path / "cells.parquet")
        else:
            assert pq.read_table(store.export(tmp_path / "cells.parquet")).num_rows == 4
        with pytest.raises(ConfigError, match=".csv or .parquet"):
            store.export(tmp_path / "cells.xlsx")


def test_the_report_lists_wrong_answers_first_and_loudly(tmp_path):
    with Store(tmp_path) as store:
        store.set_meta("spec", {"name": "w", "time_limit": 5})
        for c in HAND:
            store.record({**c, "backend": c["label"], "options": "{}"})
    text = write_report(tmp_path)["md"].read_text()
    assert "WRONG ANSWER" in text and text.index("WRONG ANSWER") < text.index("## Backends")


def test_the_study_commands(library, tmp_path, capsys):
    (tmp_path / "s.toml").write_text(MINIMAL.format(glob="lib/*/*.json"))
    out = tmp_path / "study"
    assert main(["study", "run", str(tmp_path / "s.toml"), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "8 cells run" in capsys.readouterr().out
    assert main(["study", "status", str(out), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["done"] == 8 and st["running"] == 0 and st["by_status"] == {"optimal": 8}
    assert main(["study", "report", str(out)]) == 0
    assert "| z3 |" in capsys.readouterr().out
    assert main(["study", "status", str(tmp_path / "nothing")]) == 2
    assert "holds no study" in capsys.readouterr().err
    assert main(["study", "run", str(tmp_path / "missing.toml"), "--out", str(out)]) == 2
    assert main(["instances", str(tmp_path / "s.toml"), "--out", str(tmp_path / "lib2"), "--formats", "json"]) == 0
    assert len(list((tmp_path / "lib2").glob("*/*.json"))) == 4


def test_progress_bars_stay_out_of_logs(library, tmp_path, capfd):
    """Output that is not a terminal (a log file, CI) gets no progress bar and its carriage-return updates."""
    (tmp_path / "s.toml").write_text(MINIMAL.format(glob="lib/*/*.json"))
    assert main(["study", "run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    err = capfd.readouterr().err
    assert "8 cells: 0 done, 8 to run" in err  # the status line is there
    assert "\r" not in err and "cell/s" not in err and "%|" not in err  # the bar is not


def test_opening_a_store_waits_out_another_runs_lock_and_other_errors_still_raise():
    import sqlite3

    from smug.study.store import _retry_locked

    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "opened"

    assert _retry_locked(locked_twice) == "opened" and len(calls) == 3
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _retry_locked(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("no such table: x")))
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # patience runs out: the error, not a hang
        _retry_locked(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")), patience=0.05)
