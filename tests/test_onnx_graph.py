"""digitcloud.onnx_graph and the local engines: onnxruntime answers what torch answers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from digitcloud import Client, ConfigError, local
from digitcloud import model as spec
from digitcloud.local import LocalBackend, pick_engine
from tests.conftest import stroke_digits

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from torch import Tensor, fx, nn  # noqa: E402

from digitcloud import onnx_graph  # noqa: E402  (needs onnx, which comes with onnxruntime's extra)


@pytest.fixture(scope="module")
def prepared() -> fx.GraphModule:
    net = spec.prepare(spec.load_model())
    assert isinstance(net, fx.GraphModule)  # what onnx_graph translates
    return net


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Real-looking strokes, random pixels, and the two extremes."""
    strokes = stroke_digits(60, seed=11)[0]
    noise = np.random.default_rng(1).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    flat = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    return np.concatenate([strokes, noise, flat])


def test_onnxruntime_gives_torchs_probabilities(prepared: fx.GraphModule, digits: np.ndarray) -> None:
    # given the shipped weights prepared for torch, and the same model translated for onnxruntime
    expected = spec.predict_probabilities(prepared, digits)
    engine = onnx_graph.OnnxModel(prepared, num_threads=1)
    # then every probability agrees, whatever the batch size (one digit, odd sizes, chunks)
    for batch_size in (1, 7, 256):
        np.testing.assert_allclose(engine.predict(digits, batch_size), expected, atol=1e-5)
    assert engine.predict(digits[:0]).shape == (0, 10)


SMALL_MAPS = [(2, 1, 1), (2, 2, 1), (3, 1, 1), (1, 1, 1), (3, 1, 0), (4, 2, 1)]  # (size, stride, padding)


@pytest.mark.parametrize(("size", "stride", "padding"), SMALL_MAPS)
def test_dense_map_is_the_convolution(size: int, stride: int, padding: int) -> None:
    # given a 3x3 convolution with a bias on a small map
    rng = np.random.default_rng(size * 10 + stride)
    conv = torch.nn.Conv2d(5, 6, 3, stride=stride, padding=padding).eval()
    x = torch.from_numpy(rng.standard_normal((4, 5, size, size)).astype(np.float32))
    weight, bias = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    # when it is written as one matrix over (pixel, channel) vectors
    matrix, tiled, (out_h, out_w, cout) = onnx_graph.dense_map(weight, bias, conv, size, size)
    rows = x.permute(0, 2, 3, 1).reshape(4, -1).numpy()
    dense = (rows @ matrix + tiled).reshape(4, out_h, out_w, cout).transpose(0, 3, 1, 2)
    # then it computes what the convolution computes
    with torch.no_grad():
        np.testing.assert_allclose(dense, conv(x).numpy(), atol=1e-5)


def test_only_the_2x2_maps_become_matrices(prepared: fx.GraphModule) -> None:
    import onnx

    graph = onnx.load_from_string(onnx_graph.to_onnx(prepared)).graph
    kinds = [n.op_type for n in graph.node]
    # layer3's eleven 3x3 stride-1 convs on 2x2 maps are matrix products; the other 25 stay convs
    assert kinds.count("Gemm") == 11 + 1  # and the classifier
    assert kinds.count("Conv") == 36 - 11
    assert [i.name for i in graph.input] == ["digits"] and [o.name for o in graph.output] == ["probabilities"]


class _Small(nn.Module):
    """Every module kind the translation knows, on a small net; the classifier with or without bias."""

    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 10, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avg(self.pool(self.relu(self.conv(x)))), 1))


@pytest.mark.parametrize("bias", [True, False], ids=["fc_with_bias", "fc_without_bias"])
def test_a_small_net_translates_with_or_without_the_classifiers_bias(bias: bool, digits: np.ndarray) -> None:
    torch.manual_seed(0)
    net = torch.fx.symbolic_trace(_Small(bias).eval())
    expected = spec.predict_probabilities(net, digits)
    np.testing.assert_allclose(onnx_graph.OnnxModel(net, num_threads=1).predict(digits), expected, atol=1e-5)


def test_a_node_it_cannot_translate_is_refused_by_name() -> None:
    net = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Sigmoid()))
    with pytest.raises(onnx_graph.UnsupportedGraph, match="Sigmoid"):
        onnx_graph.to_onnx(net)
    with pytest.raises(onnx_graph.UnsupportedGraph, match=r"torch\.fx"):
        onnx_graph.to_onnx(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_engines_agree_through_classify(digits: np.ndarray) -> None:
    results = {}
    for engine in ("onnxruntime", "torch"):
        with Client(backend="local", local_engine=engine) as client:
            results[engine] = client.classify(digits)
    fast, reference = results["onnxruntime"], results["torch"]
    assert sum(r.ok for r in reference) >= 60  # the strokes at least; blank inputs are refused by both
    assert [(r.digit, type(r.error)) for r in fast] == [(r.digit, type(r.error)) for r in reference]
    answered = [(a.confidence, b.confidence) for a, b in zip(fast, reference, strict=True) if b.ok]
    np.testing.assert_allclose([a for a, _ in answered], [b for _, b in answered], atol=1e-5)


def test_auto_picks_onnxruntime_when_installed_and_torch_when_not(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pick_engine("auto") == "onnxruntime"
    assert pick_engine("torch") == "torch"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert pick_engine("auto") == "torch"


def test_auto_answers_with_torch_when_onnxruntime_cannot_build_the_session(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(net: object) -> bytes:
        raise onnx_graph.UnsupportedGraph("simulated: a node this translation does not know")

    monkeypatch.setattr(onnx_graph, "to_onnx", broken)
    monkeypatch.setattr(local, "_MODELS", {})  # nothing cached from other tests
    digit = stroke_digits(1, seed=3)[0]
    # "auto" still answers, with torch, and says why in the log
    backend = LocalBackend(engine="auto")
    assert backend.predict(digit).shape == (1, 10) and backend.engine == "torch"
    assert "onnxruntime cannot run the model (UnsupportedGraph: simulated" in caplog.text
    # asked for by name, onnxruntime's failure is the answer
    with pytest.raises(onnx_graph.UnsupportedGraph, match="simulated"):
        LocalBackend(engine="onnxruntime").predict(digit)


def test_engine_comes_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITCLOUD_LOCAL_ENGINE", "torch")
    assert Client(backend="local").settings.local_engine == "torch"
    assert Client(backend="local", local_engine="onnxruntime").settings.local_engine == "onnxruntime"
    monkeypatch.setenv("DIGITCLOUD_LOCAL_ENGINE", "tensorrt")
    with pytest.raises(ConfigError, match="local_engine must be one of auto, onnxruntime, torch; got 'tensorrt'"):
        Client(backend="local")


def test_without_onnxruntime_auto_answers_with_torch_and_a_named_engine_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import numpy as np, digitcloud\n"
        "one = np.eye(28, dtype=np.uint8) * 255\n"
        "client = digitcloud.Client(backend='local')\n"
        "result = client.classify(one)\n"
        "print(client._local.engine, result.digit in range(10))\n"
        "try:\n"
        "    digitcloud.Client(backend='local', local_engine='onnxruntime').classify(one)\n"
        "except digitcloud.MissingDependencyError as exc:\n"
        "    print('missing:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].split() == ["torch", "True"]
    assert "missing: the onnxruntime engine needs onnxruntime and onnx: pip install 'digitcloud[local]'" in out
