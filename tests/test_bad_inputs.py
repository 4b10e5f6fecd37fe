"""The catalogue of bad inputs: every one gives its named error (a SmugError subclass), before any slow work.

Three parts: the Python API (models, inputs, configs), the IR JSON reader, and
the ``smug`` command (run in-process through :func:`smug.cli.main`; the slow
work a bad argument must not start is model training, so each CLI case runs
with an empty ``SMUG_CACHE_DIR`` and checks that nothing was trained or written).
docs/reliability.md counts these cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import smug
from smug.cli import EXIT_CODES, main
from smug.errors import (
    BoundsError,
    ConfigError,
    NonFiniteError,
    SchemaError,
    ShapeError,
    SmugError,
    UnknownBackendError,
    ValidationError,
)
from smug.ir import Problem, ProblemBuilder
from smug.testing.reference import StuckBackend


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


X = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1))


def with_param(path: str, index: tuple[int, ...], value: float) -> nn.Module:
    m = mlp()
    with torch.no_grad():
        dict(m.named_parameters())[path][index] = value
    return m


class Twice(nn.Module):
    """A model that applies its first layer twice (weight sharing)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fl, self.l1, self.r, self.l2 = nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.r(self.l1(self.fl(x)))
        return self.l2(self.r(self.l1(h)))


class OneDim(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def nan_bn() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    m[1].running_var[0] = float("nan")
    return m


def overflowing() -> nn.Module:
    m = mlp()
    with torch.no_grad():
        m[1].weight.fill_(3e38)  # finite float32 weights whose products overflow
    return m


Z3 = dict(backend="z3", top_k=3)

# (id, call, error class, message fragment)
API_CASES = [
    (
        "nan-weight",
        lambda: smug.explain(with_param("1.weight", (0, 0), float("nan")), X, **Z3),
        NonFiniteError,
        "'1.weight'",
    ),
    (
        "inf-weight",
        lambda: smug.explain(with_param("1.weight", (0, 0), float("inf")), X, **Z3),
        NonFiniteError,
        "infinite",
    ),
    (
        "nan-bias-later-layer",
        lambda: smug.explain(with_param("3.bias", (0,), float("nan")), X, **Z3),
        NonFiniteError,
        "'3.bias'",
    ),
    (
        "network-inf-weight",
        lambda: smug.explain_network(with_param("1.weight", (2, 3), float("inf")), X, backend="z3"),
        NonFiniteError,
        "'1.weight'",
    ),
    (
        "network-nan-bias",
        lambda: smug.explain_network(with_param("3.bias", (1,), float("nan")), X, backend="z3"),
        NonFiniteError,
        "'3.bias'",
    ),
    (
        "nan-batchnorm-buffer",
        lambda: smug.explain(nan_bn(), torch.rand(1, 4, 4), **Z3),
        NonFiniteError,
        "buffer '1.running_var'",
    ),
    (
        "overflowing-activations",
        lambda: smug.explain(overflowing(), X, **Z3),
        NonFiniteError,
        "produced NaN or infinite",
    ),
    (
        "network-overflowing-activations",
        lambda: smug.explain_network(overflowing(), X, backend="z3"),
        NonFiniteError,
        "NaN or infinite",
    ),
    ("nan-input", lambda: smug.explain(mlp(), torch.full((1, 4, 4), float("nan")), **Z3), NonFiniteError, "input"),
    (
        "network-inf-input",
        lambda: smug.explain_network(mlp(), torch.full((1, 4, 4), float("inf")), backend="z3"),
        NonFiniteError,
        "input",
    ),
    ("wrong-shape", lambda: smug.explain(mlp(), torch.rand(1, 5, 5), **Z3), ShapeError, "takes 16 features"),
    ("batch-of-two", lambda: smug.explain(mlp(), torch.rand(2, 1, 4, 4), **Z3), ShapeError, "batch of 2"),
    (
        "network-batch-of-two",
        lambda: smug.explain_network(mlp(), torch.rand(2, 1, 4, 4), backend="z3"),
        ShapeError,
        "batch of 2",
    ),
    (
        "network-wrong-shape",
        lambda: smug.explain_network(mlp(), torch.rand(1, 5, 5), backend="z3"),
        ShapeError,
        "takes 16 features",
    ),
    ("two-dim-input", lambda: smug.explain(mlp(), torch.rand(4, 4), **Z3), ShapeError, "(C, H, W)"),
    ("first-layer-twice", lambda: smug.explain(Twice(), X, **Z3), ValidationError, "called 2 times"),
    (
        "problem-first-layer-twice",
        lambda: smug.explanation_problem(Twice(), X, **Z3),
        ValidationError,
        "called 2 times",
    ),
    ("one-dim-logits", lambda: smug.explain(OneDim(), X, **Z3), ShapeError, "logits of shape (1, classes)"),
    (
        "integer-input",
        lambda: smug.explain(mlp(), torch.ones(1, 4, 4, dtype=torch.int64), **Z3),
        ValidationError,
        "floating point",
    ),
    ("list-input", lambda: smug.explain(mlp(), [[0.0] * 4] * 4, **Z3), TypeError, "torch.Tensor or numpy"),
    ("target-out-of-range", lambda: smug.explain(mlp(), X, target=3, **Z3), ValidationError, "0..2"),
    ("target-bool", lambda: smug.explain(mlp(), X, target=True, **Z3), ValidationError, "out of range"),
    (
        "network-target-out-of-range",
        lambda: smug.explain_network(mlp(), X, target=-1, backend="z3"),
        ValidationError,
        "0..2",
    ),
    ("model-not-a-module", lambda: smug.explain(lambda x: x, X, **Z3), TypeError, "torch.nn.Module"),
    (
        "gamma-plus-margin",
        lambda: smug.explain(mlp(), X, backend="z3", gamma=0.99, margin=0.1),
        ConfigError,
        "must be below 1",
    ),
    ("unknown-config-key", lambda: smug.explain(mlp(), X, backend="z3", topk=3), ConfigError, "topk"),
    ("nan-gamma", lambda: smug.explain(mlp(), X, backend="z3", gamma=float("nan")), ConfigError, "gamma"),
    ("unknown-backend", lambda: smug.explain(mlp(), X, backend="z4", top_k=3), UnknownBackendError, "z3"),
    (
        "network-robust-outside-range",
        lambda: smug.explain_network(mlp(), X + 2.0, backend="z3", masking="robust", input_range=(0.0, 1.0)),
        BoundsError,
        "input_range",
    ),
    (
        "network-nan-delta",
        lambda: smug.explain_network(mlp(), X, backend="z3", delta=float("nan")),
        ConfigError,
        "delta",
    ),
]


@pytest.mark.parametrize("call, error, fragment", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_named_error(call, error, fragment):
    with pytest.raises(error) as info:
        call()
    assert fragment in str(info.value)
    if error is not TypeError:
        assert isinstance(info.value, SmugError)


@pytest.mark.parametrize("explain", ["explain", "explanation_problem", "explain_network"])
def test_explaining_restores_the_models_mode(explain):
    m = mlp().train()
    m[1].eval()  # a mixed state must come back exactly
    kwargs = dict(backend="z3") if explain == "explain_network" else Z3
    getattr(smug, explain)(m, X, **kwargs)
    assert m.training and not m[1].training and m[3].training
    m.eval()
    getattr(smug, explain)(m, X, **kwargs)
    assert not any(mod.training for mod in m.modules())


def test_a_failed_explanation_restores_the_mode_too():
    m = with_param("1.weight", (0, 0), float("nan")).train()
    with pytest.raises(NonFiniteError):
        smug.explain(m, X, **Z3)
    assert m.training


# ------------------------------------------------------------------- IR JSON
def good_dict() -> dict:
    b = ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 2.0, 0.5], [0.0, 1.0, 1.0]], ">=", [2.0, 1.0], strict=[True, False], margin=[1e-6, 0.0])
    b.set_objective(m, 1.0)
    return b.build().to_dict()


def edit(path: str, value) -> dict:
    d = good_dict()
    *head, last = path.split(".")
    node = d
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node[k]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return d


def nested(depth: int) -> str:
    return '{"format": "smug-problem", "metadata": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


JSON_CASES = [
    ("binary-string-false", edit("variables.binary.0", "false"), "variables.binary[0] must be true or false"),
    ("strict-string-no", edit("linear.strict.0", "no"), "linear.strict[0] must be true or false"),
    ("strict-int-one", edit("linear.strict.0", 1), "must be true or false"),
    ("column-index-float", edit("linear.col.0", 0.5), "linear.col[0] must be an integer index"),
    ("column-index-negative", edit("linear.col.0", -1), "out of range"),
    ("column-index-too-large", edit("linear.col.0", 3), "out of range 0..2"),
    ("row-index-too-large", edit("linear.row.0", 2), "out of range 0..1"),
    ("n-mask-float", edit("n_mask", 3.7), "n_mask must be an integer"),
    ("n-mask-bool", edit("n_mask", True), "n_mask must be an integer"),
    ("n-mask-too-large", edit("n_mask", 4), "exceeds the 3 variables"),
    ("n-mask-negative", edit("n_mask", -1), "n_mask must be >= 0"),
    ("lb-length", edit("variables.lb", [0.0, 0.0]), "variables.ub has 3 entries, expected 2"),
    ("rhs-length", edit("linear.rhs", [1.0]), "linear.rhs has 1 entries, expected 2"),
    ("row-col-length", edit("linear.row", [0]), "linear.row has 1 entries"),
    ("rhs-string", edit("linear.rhs.0", "2"), "linear.rhs[0] must be a number"),
    ("rhs-bool", edit("linear.rhs.0", True), "must be a number"),
    ("unknown-sense", edit("linear.sense.0", ">"), "use '<=', '>=' or '=='"),
    ("unknown-top-key", {**good_dict(), "objectve": {}}, "did you mean 'objective'"),
    ("unknown-nested-key", edit("linear.rows", []), "unknown field linear.rows"),
    ("missing-field", {k: v for k, v in good_dict().items() if k != "relu"}, "missing field problem.relu"),
    ("wrong-version", edit("version", 2), "unsupported schema version 2"),
    ("version-true", edit("version", True), "unsupported schema version"),
    ("not-a-problem", edit("format", "onnx"), "not a smug problem"),
    ("declared-huge-rows", edit("linear.shape", [10**10, 3]), "linear.shape says 10000000000 rows"),
    ("declared-huge-cols", edit("linear.shape", [2, 10**10]), "columns but variables list 3"),
    ("variables-not-object", edit("variables", [1, 2]), "variables must be a JSON object"),
    ("names-not-strings", edit("variables.names", [1, 2, 3]), "variables.names[0] must be a string"),
    ("metadata-list", edit("metadata", [1]), "metadata must be a JSON object"),
    ("constant-string", edit("objective.constant", "0"), "objective.constant must be a number"),
    (
        "groups-shape-zero",
        edit("groups", {"input_shape": [0], "row": [], "col": [], "val": []}),
        "groups.input_shape[0] must be >= 1",
    ),
]


def with_duplicate_entry() -> dict:
    d = good_dict()
    for f in ("row", "col", "val"):
        d["linear"][f].append(d["linear"][f][0])
    return d


JSON_CASES.append(("duplicate-coo-entry", with_duplicate_entry(), "two entries for row 0, column 0"))


@pytest.mark.parametrize("data, fragment", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_ir_reader_is_strict(data, fragment):
    with pytest.raises(SchemaError, match=None) as info:
        Problem.from_dict(data)
    assert fragment in str(info.value)
    with pytest.raises(SchemaError):  # the same through the text reader
        Problem.from_json(json.dumps(data))


TEXT_CASES = [
    ("top-level-list", "[1, 2, 3]", SchemaError, "a smug problem is a JSON object, got a list"),
    ("top-level-list-spaced", "  [ ]", SchemaError, "JSON object"),
    ("deep-nesting", nested(100_000), SchemaError, "nests deeper"),
    ("nesting-just-too-deep", nested(70), SchemaError, "nests deeper"),
    ("not-json", "{format: smug}", SchemaError, "not valid JSON"),
    ("nan-literal", json.dumps(good_dict()).replace('"rhs": [2.0', '"rhs": [NaN'), NonFiniteError, "linear.rhs[0]"),
    ("infinity-literal", json.dumps(good_dict()).replace('"rhs": [2.0', '"rhs": [Infinity'), NonFiniteError, "finite"),
    (
        "integer-beyond-float",
        json.dumps(good_dict()).replace('"rhs": [2.0', '"rhs": [' + "9" * 400),
        NonFiniteError,
        "does not fit in a float64",
    ),
    ("missing-file", "no/such/problem.json", SchemaError, "no problem file"),
]


@pytest.mark.parametrize("text, error, fragment", [c[1:] for c in TEXT_CASES], ids=[c[0] for c in TEXT_CASES])
def test_ir_text_reader_is_strict(text, error, fragment):
    with pytest.raises(error) as info:
        Problem.from_json(text)
    assert fragment in str(info.value)


def test_ir_reader_refuses_other_types_and_folders(tmp_path):
    with pytest.raises(SchemaError, match="JSON text or a file path"):
        Problem.from_json([1, 2])
    with pytest.raises(SchemaError, match="cannot read problem file"):
        Problem.from_json(str(tmp_path))
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SchemaError):
        Problem.from_json(str(tmp_path / "bin.json"))


def test_the_good_problem_reads_back():
    p = Problem.from_dict(good_dict())  # the catalogue's edits are what fails, not the base
    assert p.n_vars == 3 and Problem.from_json(p.to_json()).to_dict() == p.to_dict()


# ------------------------------------------------------------------- CLI
@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SMUG_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    return cache


def problem_file(tmp_path: Path, feasible: bool = True) -> Path:
    b = ProblemBuilder()
    m = b.add_mask(3)
    b.add_rows([[1.0, 1.0, 1.0]], ">=", [2.0 if feasible else 4.0])
    b.set_objective(m, 1.0)
    path = tmp_path / ("p.json" if feasible else "infeasible.json")
    path.write_text(b.build().to_json())
    return path


CLI_CASES = [
    ("solve-missing-file", ["solve", "missing.json"], "no problem file 'missing.json'"),
    ("export-missing-file", ["export", "missing.json", "--format", "mps"], "no problem file"),
    (
        "export-output-folder-missing",
        ["export", "{p}", "--format", "mps", "-o", "/nonexistent/x.mps"],
        "'/nonexistent' does not exist",
    ),
    ("solve-output-folder-missing", ["solve", "{p}", "-o", "/nonexistent/s.json"], "does not exist"),
    ("solve-output-is-folder", ["solve", "{p}", "-o", "."], "is a folder"),
    ("solve-unknown-backend", ["solve", "{p}", "--backend", "ortools:sicp"], "unknown backend 'ortools:sicp'"),
    ("solve-unknown-backend-before-file", ["solve", "missing.json", "--backend", "nosuch"], "unknown backend"),
    ("solve-not-installed-backend", ["solve", "{p}", "--backend", "pysmt:msat"], "not installed"),
    ("solve-nan-time-limit", ["solve", "{p}", "--time-limit", "nan"], "--time-limit must be a positive"),
    ("solve-negative-time-limit", ["solve", "{p}", "--time-limit", "-1"], "--time-limit must be a positive"),
    ("solve-zero-threads", ["solve", "{p}", "--threads", "0"], "--threads must be a positive integer"),
    ("solve-zero-solutions", ["solve", "{p}", "--num-solutions", "0"], "--num-solutions"),
    ("solve-list-json", ["solve", "{list}"], "JSON object, got a list"),
    ("demo-unknown-backend", ["demo", "--backend", "nosuch", "-n", "1"], "unknown backend 'nosuch'"),
    ("demo-zero-inputs", ["demo", "-n", "0"], "-n must be a positive integer"),
    ("demo-text-unknown-backend", ["demo", "--text", "--backend", "nosuch"], "unknown backend"),
    ("demo-missing-model-file", ["demo", "--model", "nothere.pt"], "neither a reference model"),
    ("explain-missing-config", ["explain", "--config", "nope.toml"], "does not exist"),
    ("explain-bad-toml", ["explain", "--config", "{badtoml}"], "not valid TOML"),
    ("explain-unknown-config-key", ["explain", "--config", "{badkey}"], "topk"),
    ("explain-unknown-input-key", ["explain", "--config", "{badinput}"], "unknown key(s) ['image']"),
    ("explain-unknown-backend", ["explain", "--backend", "nosuch"], "unknown backend"),
    ("explain-negative-index", ["explain", "--indices", "-3"], "--indices must be non-negative"),
    ("explain-texts-not-list", ["explain", "--config", "{badtexts}"], "texts must be a list of strings"),
    ("network-nan-delta", ["explain-network", "--delta", "nan"], "delta = nan"),
    ("network-negative-delta", ["explain-network", "--delta", "-1"], "delta"),
    ("network-unknown-backend", ["explain-network", "--backend", "nosuch"], "unknown backend"),
    ("network-eps-without-robust", ["explain-network", "--eps", "0.1"], "add --masking robust"),
    ("network-negative-eps", ["explain-network", "--eps", "-1", "--masking", "robust"], "--eps must be a positive"),
    ("network-nan-eps", ["explain-network", "--eps", "nan", "--masking", "robust"], "--eps must be a positive"),
    ("network-zero-window", ["explain-network", "--window", "0"], "window"),
    ("network-negative-time-limit", ["explain-network", "--time-limit", "-5"], "time_limit"),
    ("network-negative-index", ["explain-network", "--indices", "-1"], "non-negative"),
    ("network-index-out-of-range", ["explain-network", "--indices", "10000"], "out of range for mnist"),
    ("explain-index-out-of-range", ["explain", "--indices", "70000"], "out of range for mnist"),
    ("network-out-is-a-file", ["explain-network", "--out", "{p}"], "is a file, not a folder"),
    (
        "evaluate-misspelt-backend",
        ["evaluate", "mnist_mlp", "--methods", "smug:ortools:sicp"],
        "unknown backend 'ortools:sicp'",
    ),
    ("evaluate-unknown-method", ["evaluate", "mnist_mlp", "--methods", "lime"], "unknown method 'lime'"),
    ("evaluate-text-unknown-method", ["evaluate", "text_cnn", "--methods", "feature-ablation"], "unknown text method"),
    ("evaluate-missing-model", ["evaluate", "nothere.pt"], "neither a reference model"),
    ("evaluate-zero-n", ["evaluate", "mnist_mlp", "--n", "0"], "--n must be a positive integer"),
    ("evaluate-zero-figure-inputs", ["evaluate", "mnist_mlp", "--figure-inputs", "0"], "--figure-inputs must be"),
    ("evaluate-misspelt-text-backend", ["evaluate", "text_cnn", "--methods", "smug:z4"], "unknown backend 'z4'"),
    ("evaluate-out-is-a-file", ["evaluate", "mnist_mlp", "--out", "{p}"], "is a file"),
]


@pytest.mark.parametrize("argv", [c[1] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_argument_is_one_error_line_before_any_work(argv, empty_cache, tmp_path, capsys):
    fragment = dict((tuple(c[1]), c[2]) for c in CLI_CASES)[tuple(argv)]
    files = {
        "p": problem_file(tmp_path),
        "list": tmp_path / "list.json",
        "badtoml": tmp_path / "bad.toml",
        "badkey": tmp_path / "badkey.toml",
        "badinput": tmp_path / "badinput.toml",
        "badtexts": tmp_path / "badtexts.toml",
    }
    files["list"].write_text("[1, 2]")
    files["badtoml"].write_text("top_k = = 3")
    files["badkey"].write_text("topk = 3")
    files["badinput"].write_text("[input]\nimage = 3")
    files["badtexts"].write_text('[input]\ntexts = "one string"')
    argv = [a.format(**files) for a in argv]
    before = set(tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("smug: error: ") and "Traceback" not in err
    assert fragment in err
    assert not empty_cache.exists()  # nothing was trained or cached
    assert set(tmp_path.iterdir()) == before  # no output folder, no partial file


def test_argparse_errors_share_the_style_and_status(empty_cache, capsys):
    with pytest.raises(SystemExit) as info:
        main(["solve"])
    assert info.value.code == 2 and "smug solve: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["explain-network", "--masking", "sometimes"])
    assert info.value.code == 2


def test_solve_exit_codes_name_the_status(empty_cache, tmp_path, capsys, monkeypatch):
    import smug.solving.registry as registry

    def register(name, factory, replace):  # for this test only: other tests iterate over every backend
        monkeypatch.setitem(registry._REGISTERED, name, factory)

    assert main(["solve", str(problem_file(tmp_path)), "--backend", "z3"]) == EXIT_CODES["optimal"] == 0
    assert main(["solve", str(problem_file(tmp_path, False)), "--backend", "z3"]) == EXIT_CODES["infeasible"]
    register("test:stuck", lambda name="test:stuck", **o: StuckBackend(), replace=True)
    assert (
        main(["solve", str(problem_file(tmp_path)), "--backend", "test:stuck", "--time-limit", "0.3"])
        == (EXIT_CODES["timeout"])
    )
    register("test:slow", lambda name="test:slow", **o: StuckBackend(report_first=True), replace=True)
    assert (
        main(["solve", str(problem_file(tmp_path)), "--backend", "test:slow", "--time-limit", "0.5"])
        == (EXIT_CODES["feasible"])
    )
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES) and 2 not in EXIT_CODES.values()


# ------------------------------------------------------------------- security
class _Payload:
    """Unpickling this calls ``Path.touch`` on the marker: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_never_runs_by_default(tmp_path, empty_cache, capsys):
    from smug.zoo.demo import load_model

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"weights": _Payload(marker)}, evil)
    with pytest.raises(ConfigError, match="trust_pickle"):
        load_model(str(evil))
    for argv in (
        ["explain-network", "--model", str(evil)],
        ["explain", "--model", str(evil)],
        ["demo", "--model", str(evil), "-n", "1"],
        ["evaluate", str(evil), "--methods", "saliency", "--dataset", "digits", "--n", "1", "--out", "o"],
    ):
        assert main(argv) == 2
        assert "--trust-pickle" in capsys.readouterr().err
        assert not marker.exists()


def test_model_files_that_load_safely_and_the_opt_in(tmp_path):
    from smug.zoo.demo import load_model
    from smug.zoo.models import mnist_mlp

    ref = mnist_mlp().eval()
    torch.save(ref.state_dict(), tmp_path / "sd.pt")
    got = load_model(str(tmp_path / "sd.pt"))
    x = torch.rand(1, 1, 28, 28)
    assert torch.equal(got(x), ref(x))
    torch.jit.save(torch.jit.script(ref), tmp_path / "script.pt")
    assert torch.allclose(load_model(str(tmp_path / "script.pt"))(x), ref(x))
    torch.save(ref, tmp_path / "whole.pt")
    with pytest.raises(ConfigError, match="pickled Python objects"):
        load_model(str(tmp_path / "whole.pt"))
    assert torch.equal(load_model(str(tmp_path / "whole.pt"), trust_pickle=True)(x), ref(x))
    torch.save({"w": torch.zeros(2)}, tmp_path / "other_sd.pt")
    with pytest.raises(ConfigError, match="fits no reference architecture"):
        load_model(str(tmp_path / "other_sd.pt"))
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ConfigError, match="not a model file"):
        load_model(str(tmp_path / "text.pt"))


def test_the_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    from smug.zoo.models import cache_dir

    monkeypatch.delenv("SMUG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "smug" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rule: only absolute paths count
    assert cache_dir() == Path.home() / ".cache" / "smug" / "models"
    monkeypatch.setenv("SMUG_CACHE_DIR", str(tmp_path / "own"))
    assert cache_dir() == tmp_path / "own"


def test_an_explanation_writes_only_where_asked(tmp_path, monkeypatch):
    """Saving writes the one requested file; nothing appears in the working folder or the home folder."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SMUG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    out.mkdir()
    e = smug.explain(mlp(), X, **Z3)
    e.save(out / "e.json")
    en = smug.explain_network(mlp(), X, backend="z3")
    en.save(out / "n.json")
    assert sorted(p.name for p in out.iterdir()) == ["e.json", "n.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out"]
    assert not any(home.iterdir())


def test_every_case_is_counted():
    """docs/reliability.md states how many bad inputs this module tries; keep it true."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    n = len(API_CASES) + len(JSON_CASES) + len(TEXT_CASES) + len(CLI_CASES)
    assert f"**{n} bad inputs**" in text, n
