"""ONNX models: networks exported by torch.onnx.export load back as the same function (float64 comparison),
hand-built graphs of every supported operator load, and an unsupported operator or graph is a named error."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import smug  # noqa: E402
from smug.encoders.network import lower_network  # noqa: E402
from smug.errors import ConfigError, ValidationError  # noqa: E402
from smug.zoo.demo import load_model  # noqa: E402
from smug.zoo.onnx import onnx_input_shape  # noqa: E402


def _export(model: nn.Module, shape: tuple[int, ...], path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model.eval(), torch.zeros(1, *shape), str(path), dynamo=False, do_constant_folding=False)


NETS = {
    "mlp": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)), (1, 8, 8)),
    "cnn": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 4, 3, stride=2),
            nn.ReLU(),
            nn.AvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 10),
        ),
        (1, 8, 8),
    ),  # fmt: skip
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 4)), (2, 8)),
}


@pytest.mark.parametrize("name", sorted(NETS))
def test_an_exported_network_loads_back_as_the_same_function(name, tmp_path):
    make, shape = NETS[name]
    torch.manual_seed(0)
    model = make().eval()
    if name == "cnn":  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    _export(model, shape, tmp_path / "net.onnx")
    back = smug.load_onnx(tmp_path / "net.onnx")
    assert isinstance(back, nn.Sequential) and not back.training
    assert onnx_input_shape(tmp_path / "net.onnx") == shape
    X = torch.rand(16, *shape, dtype=torch.float64)
    with torch.no_grad():
        want = model.double()(X)
        got = back.double()(X)
    assert torch.allclose(got, want, rtol=0, atol=1e-12)  # the same weights, bit for bit
    net = lower_network(back, shape)  # and smug's encoders read it
    assert np.allclose(net.forward(X.numpy()), want.numpy(), atol=1e-9)
    assert isinstance(load_model(str(tmp_path / "net.onnx")), nn.Sequential)  # the CLI's loader takes it


def _graph(nodes, inits, in_shape, out_shape, name="g"):
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )  # fmt: skip
    return helper.make_model(g)


def test_matmul_add_gemm_and_reshape_graphs(tmp_path):
    rng = np.random.default_rng(0)
    W1, b1, W2, b2 = rng.normal(size=(6, 5)), rng.normal(size=5), rng.normal(size=(3, 5)), rng.normal(size=3)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "W1"], ["m"]),
        helper.make_node("Add", ["m", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "W2", "b2"], ["y"], transB=1, alpha=0.5, beta=2.0),
    ]
    inits = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    m = _graph(nodes, inits, [1, 2, 3], [1, 3])
    m.graph.initializer.append(numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape"))
    onnx.save(m, tmp_path / "m.onnx")
    net = smug.load_onnx(tmp_path / "m.onnx").double()
    x = rng.random((4, 2, 3))
    f = lambda v: v.astype(np.float32).astype(np.float64)  # noqa: E731 -- the file holds float32 weights
    want = 0.5 * np.maximum(x.reshape(4, 6) @ f(W1) + f(b1), 0) @ f(W2).T + 2.0 * f(b2)
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    assert np.allclose(got, want, atol=1e-12)


@pytest.mark.parametrize(
    "nodes, inits, fragment",
    [
        ([helper.make_node("Sigmoid", ["x"], ["y"])], {}, "ONNX operator 'Sigmoid'"),
        ([helper.make_node("Add", ["x", "c"], ["y"])], {"c": np.ones(4)}, "an Add that does not follow a MatMul"),
        ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1])], {"w": np.ones((1, 1, 1, 1))},
         "asymmetric padding"),
        ([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Add", ["a", "x"], ["y"])], {}, "not a chain"),
    ],
)  # fmt: skip
def test_an_unsupported_graph_is_a_named_error(nodes, inits, fragment, tmp_path):
    onnx.save(_graph(nodes, inits, [1, 1, 2, 2], [1, 1, 2, 2]), tmp_path / "bad.onnx")
    with pytest.raises(ValidationError, match=fragment):
        smug.load_onnx(tmp_path / "bad.onnx")


def test_a_missing_or_foreign_file_is_a_named_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        smug.load_onnx(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00not a model")
    with pytest.raises(ConfigError, match="not an ONNX model"):
        smug.load_onnx(tmp_path / "junk.onnx")


def test_a_robust_explanation_of_an_onnx_network(tmp_path):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    _export(model, (1, 4, 4), tmp_path / "n.onnx")
    net = smug.load_onnx(tmp_path / "n.onnx")
    x = torch.rand(1, 4, 4)
    e = smug.explain_network(net, x, masking="robust", minimality="subset", input_range=(0.0, 1.0), time_limit=60)
    ref = smug.explain_network(model, x, masking="robust", minimality="subset", input_range=(0.0, 1.0),
                               time_limit=60)  # fmt: skip
    assert e.verified and e.minimality == "subset"
    assert np.array_equal(e.mask_groups, ref.mask_groups)  # the same network, the same explanation


def test_explain_network_on_the_command_line_takes_an_onnx_file(tmp_path, capsys):
    from smug.cli import main

    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 10))  # takes flat (64,) inputs: no Flatten
    _export(model, (64,), tmp_path / "flat.onnx")
    rc = main(["explain-network", "--model", str(tmp_path / "flat.onnx"), "--dataset", "digits", "--masking",
               "robust", "--minimality", "subset", "--indices", "0", "--out", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (tmp_path / "out" / "network_00000.json").exists() and "subset" in out


def test_inputs_are_fitted_to_the_declared_shape_or_refused(tmp_path):
    from smug.zoo.onnx import fit_inputs

    torch.manual_seed(3)
    _export(nn.Sequential(nn.Linear(16, 3)), (16,), tmp_path / "m.onnx")
    net = smug.load_onnx(tmp_path / "m.onnx")
    assert fit_inputs(net, np.zeros((2, 1, 4, 4))).shape == (2, 16)
    with pytest.raises(ConfigError, match=r"takes inputs of shape \(16,\); the digits have 64 values"):
        fit_inputs(net, np.zeros((2, 1, 8, 8)), "digits")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = np.zeros((2, 1, 8, 8))
    assert fit_inputs(plain, x) is x  # any other model: unchanged
