"""Load an ONNX network as a ``torch.nn.Sequential`` of the layers smug's encoders understand.

Why a small own loader and not ``onnx2torch``: ``onnx2torch`` depends on
torchvision (which has no CPU build that imports here, and smug never depends
on it), and it builds a ``torch.fx`` graph module whose ``forward`` is generated
code, which :func:`smug.encoders.network.lower_network` cannot read as a chain of
layers.  Verification networks (VNN-COMP, ERAN, VeriX's MNIST MLPs) are chains
of a few operators, so reading the graph directly is short and exact: every
weight is copied bit for bit and the result is an ordinary ``nn.Sequential``.

Supported operators (:data:`ONNX_OPERATORS`): ``Gemm``, ``MatMul`` (+ ``Add`` of
a constant), ``Conv`` (1-D and 2-D, symmetric padding), ``Relu``,
``Flatten`` / ``Reshape`` (to ``(batch, -1)``), ``MaxPool``, ``AveragePool``,
``BatchNormalization``, ``Identity`` and ``Dropout``.  Anything else is a
:class:`~smug.errors.ValidationError` naming the operator and node.  The graph
must be a chain: one input, one output, each node reading the previous node's
output and constants.

Needs the ``onnx`` package (``pip install onnx``) to parse the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ValidationError

__all__ = ["load_onnx", "onnx_input_shape", "fit_inputs", "ONNX_OPERATORS"]

#: The ONNX operators :func:`load_onnx` reads.
ONNX_OPERATORS = (
    "Gemm",
    "MatMul",
    "Add",
    "Conv",
    "Relu",
    "Flatten",
    "Reshape",
    "MaxPool",
    "AveragePool",
    "BatchNormalization",
    "Identity",
    "Dropout",
)


def _arr(a: Any) -> np.ndarray:
    """A writable, contiguous copy (torch refuses to share read-only buffers)."""
    return np.array(a, copy=True, order="C")


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(node: Any, a: dict[str, Any], dims: int) -> tuple[int, ...]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
        raise ValidationError(f"ONNX node {node.name!r} ({node.op_type}): auto_pad={a['auto_pad']!r} is not supported")
    pads = list(a.get("pads", [0] * (2 * dims)))
    begin, end = pads[:dims], pads[dims:]
    if begin != end:
        raise ValidationError(
            f"ONNX node {node.name!r} ({node.op_type}) has asymmetric padding {pads}; only symmetric padding "
            "is supported"
        )
    return tuple(int(p) for p in begin)


def load_onnx(path: str | os.PathLike[str]) -> nn.Module:
    """The network in the ONNX file ``path`` as an ``nn.Sequential`` in eval mode (weights in the file's dtype).

    Raises:
        ConfigError: the file is missing or not an ONNX model, or ``onnx`` is not installed.
        ValidationError: an unsupported operator or a graph that is not a chain (named, with the node).
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ConfigError("loading ONNX models needs the onnx package: pip install onnx") from None
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"ONNX model {str(p)!r} does not exist")
    try:
        model = onnx.load(str(p))
    except Exception as exc:  # noqa: BLE001 -- a damaged or foreign file
        raise ConfigError(f"{str(p)!r} is not an ONNX model: {str(exc)[:200]}") from None
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    for node in g.node:  # Constant nodes are constants too
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValidationError(
            f"the ONNX graph must have one input and one output, got inputs {[i.name for i in inputs]} "
            f"and outputs {[o.name for o in g.output]}"
        )
    current = inputs[0].name
    layers: list[nn.Module] = []
    spatial = False  # the current value has spatial axes (after a Conv, before a Flatten)
    nodes = [n for n in g.node if n.op_type != "Constant"]
    k = 0
    while k < len(nodes):
        node = nodes[k]
        op, a = node.op_type, _attrs(node)
        data_in = [x for x in node.input if x and x not in consts]
        if data_in != [current]:
            raise ValidationError(
                f"the ONNX graph is not a chain: node {node.name!r} ({op}) reads {list(node.input)}, expected "
                f"{current!r} and constants"
            )
        const_in = [consts[x] for x in node.input if x in consts]
        if op == "Gemm":
            if a.get("transA", 0):
                raise ValidationError(f"ONNX node {node.name!r}: Gemm with transA=1 is not supported")
            W = const_in[0] * float(a.get("alpha", 1.0))
            W = W if a.get("transB", 0) else W.T
            lin = nn.Linear(W.shape[1], W.shape[0], bias=len(const_in) > 1)
            lin.weight.data = torch.from_numpy(_arr(W))
            if len(const_in) > 1:
                b = np.broadcast_to(const_in[1] * float(a.get("beta", 1.0)), (W.shape[0],))
                lin.bias.data = torch.from_numpy(_arr(b))
            layers.append(lin)
        elif op == "MatMul":
            W = const_in[0].T  # x @ W  ->  Linear weight W^T
            bias = None
            nxt = nodes[k + 1] if k + 1 < len(nodes) else None
            if nxt is not None and nxt.op_type == "Add" and node.output[0] in nxt.input:
                others = [x for x in nxt.input if x != node.output[0]]
                if len(others) == 1 and others[0] in consts:
                    bias = np.broadcast_to(consts[others[0]], (W.shape[0],))
                    node = nxt
                    k += 1
            lin = nn.Linear(W.shape[1], W.shape[0], bias=bias is not None)
            lin.weight.data = torch.from_numpy(_arr(W))
            if bias is not None:
                lin.bias.data = torch.from_numpy(_arr(bias))
            layers.append(lin)
        elif op == "Add":
            raise ValidationError(
                f"ONNX node {node.name!r}: an Add that does not follow a MatMul is not supported "
                f"(supported: {', '.join(ONNX_OPERATORS)})"
            )
        elif op == "Conv":
            W = const_in[0]
            dims = W.ndim - 2
            if dims not in (1, 2):
                raise ValidationError(f"ONNX node {node.name!r}: only 1-D and 2-D Conv are supported")
            cls = nn.Conv1d if dims == 1 else nn.Conv2d
            conv = cls(
                W.shape[1] * int(a.get("group", 1)), W.shape[0], tuple(W.shape[2:]),
                stride=tuple(a.get("strides", [1] * dims)), padding=_pads(node, a, dims),
                dilation=tuple(a.get("dilations", [1] * dims)), groups=int(a.get("group", 1)),
                bias=len(const_in) > 1,
            )  # fmt: skip
            conv.weight.data = torch.from_numpy(_arr(W))
            if len(const_in) > 1:
                conv.bias.data = torch.from_numpy(_arr(const_in[1]))
            layers.append(conv)
            spatial = True
        elif op == "Relu":
            layers.append(nn.ReLU())
        elif op in ("Flatten", "Reshape"):
            if op == "Flatten" and int(a.get("axis", 1)) != 1:
                raise ValidationError(f"ONNX node {node.name!r}: Flatten with axis={a['axis']} is not supported")
            if op == "Reshape":
                shape = [int(v) for v in np.asarray(const_in[0]).ravel()]
                if not (len(shape) == 2 and shape[0] in (1, -1, 0) or len(shape) == 1 and shape[0] == -1):
                    raise ValidationError(
                        f"ONNX node {node.name!r}: Reshape to {shape} is not supported (only to (batch, -1))"
                    )
            layers.append(nn.Flatten())
            spatial = False
        elif op in ("MaxPool", "AveragePool"):
            ks = tuple(a["kernel_shape"])
            if len(ks) != 2:
                raise ValidationError(f"ONNX node {node.name!r}: only 2-D pooling is supported")
            if a.get("ceil_mode", 0):
                raise ValidationError(f"ONNX node {node.name!r}: ceil_mode=1 is not supported")
            kw = {"stride": tuple(a.get("strides", [1, 1])), "padding": _pads(node, a, 2)}
            if op == "MaxPool":
                layers.append(nn.MaxPool2d(ks, **kw))
            else:
                layers.append(nn.AvgPool2d(ks, count_include_pad=bool(a.get("count_include_pad", 0)), **kw))
        elif op == "BatchNormalization":
            scale, bias, mean, var = const_in[:4]
            bn = (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(scale.shape[0], eps=float(a.get("epsilon", 1e-5)))
            bn.weight.data, bn.bias.data = torch.from_numpy(scale.copy()), torch.from_numpy(bias.copy())
            bn.running_mean.data, bn.running_var.data = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
            layers.append(bn)
        elif op in ("Identity", "Dropout"):
            pass
        else:
            raise ValidationError(
                f"ONNX operator {op!r} (node {node.name!r}) is not supported; supported: {', '.join(ONNX_OPERATORS)}"
            )
        current = node.output[0]
        k += 1
    if current != g.output[0].name:
        raise ValidationError(f"the ONNX graph's output {g.output[0].name!r} is not the end of its chain")
    dtypes = {p.dtype for m in layers for p in m.parameters()}
    net = nn.Sequential(*layers)
    if len(dtypes) == 1:
        net = net.to(dtypes.pop())
    net.onnx_input_shape = _declared_shape(inputs[0])  # what fit_inputs reshapes to
    return net.eval()


def _declared_shape(value_info: Any) -> tuple[int, ...] | None:
    dims = [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]
    rest = dims[1:]
    return None if any(d is None for d in rest) else tuple(int(d) for d in rest)


def fit_inputs(model: nn.Module, inputs: np.ndarray, what: str = "inputs") -> np.ndarray:
    """``inputs`` (a batch) reshaped to the input shape a :func:`load_onnx` model's graph declares (unchanged for
    any other model, or a symbolic shape).

    Raises:
        ConfigError: the declared shape holds a different number of values than each input.
    """
    shape = getattr(model, "onnx_input_shape", None)
    if shape is None:
        return inputs
    if int(np.prod(shape)) != inputs[0].size:
        raise ConfigError(f"the ONNX model takes inputs of shape {shape}; the {what} have {inputs[0].size} values")
    return inputs.reshape(len(inputs), *shape)


def onnx_input_shape(path: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The input shape (without the batch axis) the ONNX file declares, or ``None`` when it is symbolic."""
    import onnx

    g = onnx.load(str(path)).graph
    consts = {t.name for t in g.initializer}
    (inp,) = [i for i in g.input if i.name not in consts]
    return _declared_shape(inp)
