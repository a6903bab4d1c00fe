"""The prepared digit model as an ONNX graph, and onnxruntime running it on the CPU.

Why onnxruntime: on this project's 2-core AVX2 CPU torch spends 80 % of a single digit's time in
its native im2col convolution and re-reads ~40 MB of fp32 weights per call (11.8-13.0 ms);
onnxruntime prepacks the weights once and answers one digit in ~4.5 ms. Why a hand-written
translation instead of ``torch.onnx.export``: torch's TorchScript exporter is deprecated and
warns, and its torch.export-based one takes ~7 s per process and pulls in onnxscript. The model
after ``model.prepare`` is a torch.fx graph of nine kinds of node; each is one or two ONNX
operators here, and anything else is refused (``UnsupportedGraph``), never approximated.

One rewrite that torch's convolution cannot use: a convolution whose input map has fewer pixels
than its kernel has taps (layer3's 3x3 convs on 2x2 maps) is written as one matrix product over
(pixel, channel). Im2col multiplies all 9 taps at each of the 4 pixels, 5 of them zero padding;
the dense map does only the 16 products that read real pixels, 2.25x fewer, with the same sums.
Batch 256 goes from ~720 to ~870 digits/s (bench/README.md).

The graph takes the uint8 digits ``[N, 28, 28]`` and returns softmax probabilities ``[N, 10]``:
scaling and normalising happen inside it, so inference needs no torch at all.
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np

from digitcloud import model as spec
from digitcloud.errors import LocalBackendError, MissingDependencyError

if TYPE_CHECKING:
    from torch import fx

OPSET = 17


class UnsupportedGraph(LocalBackendError):
    """The prepared model holds a node this translation does not know (a bug here, not the user's)."""


def import_onnxruntime() -> Any:
    """onnxruntime, or a MissingDependencyError naming the extra that installs it (with onnx)."""
    try:
        import onnx  # noqa: F401  (to_onnx needs it; fail early and clearly)
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(
            "the onnxruntime engine needs onnxruntime and onnx: pip install 'digitcloud[local]'"
        ) from exc
    return onnxruntime


def out_size(layer: Any, height: int, width: int) -> tuple[int, int]:
    """The output map size of a Conv2d or MaxPool2d (no dilation, floor mode) on ``height x width``."""
    kh, kw = _pair(layer.kernel_size)
    (sh, sw), (ph, pw) = _pair(layer.stride), _pair(layer.padding)
    return (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def dense_map(
    weight: np.ndarray, bias: np.ndarray | None, conv: Any, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """The convolution on an ``height x width`` map as a matrix ``[H*W*Cin, Ho*Wo*Cout]`` and a
    bias ``[Ho*Wo*Cout]``, both over pixel-major (NHWC) vectors: output pixel ``p`` gets input
    pixel ``q`` through the tap that lands on ``q``, and taps that land on padding are dropped."""
    cout, cin, kh, kw = weight.shape
    (sh, sw), (ph, pw) = conv.stride, conv.padding
    out_h, out_w = out_size(conv, height, width)
    matrix = np.zeros((height, width, cin, out_h, out_w, cout), dtype=np.float32)
    for oy in range(out_h):
        for ox in range(out_w):
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                    if 0 <= iy < height and 0 <= ix < width:
                        matrix[iy, ix, :, oy, ox, :] += weight[:, :, ky, kx].T
    tiled = np.zeros(out_h * out_w * cout, dtype=np.float32) if bias is None else np.tile(bias, out_h * out_w)
    return matrix.reshape(height * width * cin, out_h * out_w * cout), tiled, (out_h, out_w, cout)


def to_onnx(net: fx.GraphModule) -> bytes:
    """The serialized ONNX model of ``net``, a model returned by ``model.prepare``."""
    import_onnxruntime()
    import onnx
    from onnx import TensorProto, helper

    torch = spec.import_torch()  # model.py stays the one module that imports torch

    if not isinstance(net, torch.fx.GraphModule):
        raise UnsupportedGraph(f"expected the torch.fx model from model.prepare, got {type(net).__name__}")
    graph = _Graph()
    # uint8 [N, 28, 28] -> (x / 255 - MEAN) / STD as [N, 1, 28, 28]: what model.to_model_input does
    scale = graph.const("scale", np.array([1 / (255 * spec.STD)], dtype=np.float32))
    shift = graph.const("shift", np.array([-spec.MEAN / spec.STD], dtype=np.float32))
    scaled = graph.op("Cast", ["digits"], "digits_float", to=TensorProto.FLOAT)
    scaled = graph.op("Add", [graph.op("Mul", [scaled, scale], "digits_scaled"), shift], "digits_normalised")
    for node in net.graph.nodes:
        inputs = [a.name for a in node.args if isinstance(a, torch.fx.Node)]
        if inputs:
            graph.sizes[node.name] = graph.sizes[inputs[0]]  # unless a conv or a pooling changes it
        if node.op == "placeholder":
            graph.op("Unsqueeze", [scaled, graph.const("channel_axis", np.array([1], dtype=np.int64))], node.name)
            graph.sizes[node.name] = (spec.INPUT_SIZE, spec.INPUT_SIZE)
        elif node.op == "output":
            graph.op("Softmax", inputs, "probabilities", axis=1)
        elif node.op == "call_module":
            graph.module(node.name, net.get_submodule(node.target), inputs)
        elif node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add):
            graph.op("Add", inputs, node.name)
        elif node.op == "call_function" and node.target is torch.flatten and node.args[1:] == (1,):
            graph.op("Flatten", inputs, node.name, axis=1)
        else:
            raise UnsupportedGraph(f"{node.format_node()}: not translated")

    side = spec.INPUT_SIZE
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "digitcloud-resnet34",
            [helper.make_tensor_value_info("digits", TensorProto.UINT8, ["N", side, side])],
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(spec.LABELS)])],
            initializer=graph.weights,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="digitcloud",
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    serialized = bytes(model.SerializeToString())
    onnx.checker.check_model(serialized)
    return serialized


class _Graph:
    """ONNX nodes and weights collected while walking the fx graph; values are named after fx nodes."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.weights: list[Any] = []
        self.sizes: dict[str, tuple[int, int]] = {}  # value -> height and width of its feature map

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(kind, inputs, [output], name=output, **attrs))
        return output

    def module(self, name: str, module: Any, inputs: list[str]) -> None:
        kind = type(module).__name__
        if kind == "Conv2d":
            self.conv(name, module, inputs)
        elif kind == "ReLU":
            self.op("Relu", inputs, name)
        elif kind == "MaxPool2d":
            size, stride, pad = module.kernel_size, module.stride, module.padding
            if module.dilation != 1 or module.ceil_mode or not all(isinstance(v, int) for v in (size, stride, pad)):
                raise UnsupportedGraph(f"{name}: only square max-pooling without dilation is translated")
            self.op("MaxPool", inputs, name, kernel_shape=[size] * 2, strides=[stride] * 2, pads=[pad] * 4)
            self.sizes[name] = out_size(module, *self.sizes[name])
        elif kind == "AdaptiveAvgPool2d" and module.output_size in (1, (1, 1)):
            self.op("GlobalAveragePool", inputs, name)
            self.sizes[name] = (1, 1)
        elif kind == "Linear":
            params = [self.const(f"{name}_w", _array(module.weight))]
            if module.bias is not None:  # Gemm's C is optional
                params.append(self.const(f"{name}_b", _array(module.bias)))
            self.op("Gemm", [*inputs, *params], name, transB=1)
        else:
            raise UnsupportedGraph(f"{name}: a {kind} is not translated")

    def conv(self, name: str, conv: Any, inputs: list[str]) -> None:
        """A Conv; or, on a map with fewer pixels than the kernel has taps, its ``dense_map``."""
        if conv.groups != 1 or conv.dilation != (1, 1) or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise UnsupportedGraph(f"{name}: only plain convolutions are translated")
        height, width = self.sizes[name]
        self.sizes[name] = out_size(conv, height, width)
        weight = _array(conv.weight)
        bias = None if conv.bias is None else _array(conv.bias)
        if height * width >= conv.kernel_size[0] * conv.kernel_size[1]:
            params = [self.const(f"{name}_w", weight)] + ([self.const(f"{name}_b", bias)] if bias is not None else [])
            shape = {"kernel_shape": list(conv.kernel_size), "strides": list(conv.stride)}
            self.op("Conv", [*inputs, *params], name, pads=[*conv.padding, *conv.padding], **shape)
            return
        matrix, tiled, (out_h, out_w, cout) = dense_map(weight, bias, conv, height, width)
        x = self.op("Transpose", inputs, f"{name}_nhwc", perm=[0, 2, 3, 1])
        x = self.op(
            "Reshape", [x, self.const(f"{name}_rows", np.array([-1, matrix.shape[0]], dtype=np.int64))], f"{name}_in"
        )
        x = self.op("Gemm", [x, self.const(f"{name}_w", matrix), self.const(f"{name}_b", tiled)], f"{name}_mm")
        x = self.op(
            "Reshape",
            [x, self.const(f"{name}_grid", np.array([-1, out_h, out_w, cout], dtype=np.int64))],
            f"{name}_out",
        )
        self.op("Transpose", [x], name, perm=[0, 3, 1, 2])


def _array(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.detach().float().cpu().numpy())


class OnnxModel:
    """The model in an onnxruntime session on the CPU: uint8 digits in, probabilities out."""

    def __init__(self, net: fx.GraphModule, num_threads: int) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; onnxruntime's warnings go to stderr, not logging
        self._session = ort.InferenceSession(to_onnx(net), options, providers=["CPUExecutionProvider"])

    def predict(self, digits: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Softmax probabilities ``[N, 10]`` (float32) for uint8 digits ``[N, 28, 28]``."""
        out = np.empty((len(digits), len(spec.LABELS)), dtype=np.float32)
        for start in range(0, len(digits), batch_size):
            chunk = np.ascontiguousarray(digits[start : start + batch_size], dtype=np.uint8)
            out[start : start + len(chunk)] = self._session.run(["probabilities"], {"digits": chunk})[0]
        return out
