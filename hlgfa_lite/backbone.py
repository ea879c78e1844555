"""The frozen, shared backbone: one ImageNet network run on two resizes of the same image.

For an image ``x`` and a feature level ``l`` with stride ``s_l``:

    x_H = resize(x, hr_size),  x_L = resize(x_H, lr_size)     (the low view is made from the high one)
    F_H^l = phi_l(x_H)   shape (B, C_l, hr_size / s_l, hr_size / s_l)
    F_L^l = phi_l(x_L)   shape (B, C_l, lr_size / s_l, lr_size / s_l)

``phi`` never learns: eval mode (BatchNorm uses its ImageNet statistics), ``requires_grad=False`` and
no autograd graph is kept, so the high-res features of a training image can be computed once and cached.

Two runtimes compute the same ``phi`` (``HLGFAConfig.backbone_runtime``):

- ``"torch"``: the network traced with TorchScript and frozen once per input shape (BatchNorm folded in), its
  convolutions fused with their activations by oneDNN Graph on a CPU (``fused_on_cpu``);
- ``"onnxruntime"``: the network exported to ONNX once per input shape and run by ONNX Runtime on the CPU
  (optional: ``pip install 'hlgfa-lite[fast]'``). Its fused, layout-planned convolutions run the same network
  faster on a CPU (benchmarks/inference_speed.py measures by how much, side by side); the features agree with the
  torch path to float32 rounding (tests/test_backbone_runtime.py). Tensors on a GPU always take the torch path.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .errors import HLGFAError
from .weights import create_feature_extractor, fingerprint

RUNTIMES = ("torch", "onnxruntime")
ONNX_OPSET = 17
FUSION_RUNS = 3  # TorchScript settles a graph's optimised plan by its third run (one profiled run, then the plan)
_fusion_switch = threading.Lock()  # oneDNN fusion is a process-wide TorchScript switch, held on only while warming


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is known and its packages are installed; else one line that says what to do."""
    if runtime not in RUNTIMES:
        raise HLGFAError(f"backbone_runtime must be one of {list(RUNTIMES)}, got {runtime!r}.")
    if runtime == "onnxruntime":
        missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            raise HLGFAError(f"backbone_runtime 'onnxruntime' needs {' and '.join(missing)}: "
                             "pip install 'hlgfa-lite[fast]', or use backbone_runtime 'torch'.")
    return runtime


class Normalised(nn.Module):
    """x in [0, 1] -> net((x - mean) / std): the normalisation inside the exported graph, where ONNX Runtime
    runs it in the same pass as the first layer instead of as separate whole-image tensor operations."""

    def __init__(self, net: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net, self.mean, self.std = net, mean, std

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.net((images - self.mean) / self.std)


class OnnxRunner:
    """The normalisation and the network exported to ONNX for one input shape, run by an ONNX Runtime CPU session.

    The legacy (TorchScript-based) exporter: it needs only the ``onnx`` package and exports Lite0 in about a
    second, against several seconds for the torch.export-based one. ONNX Runtime folds BatchNorm into the
    convolutions and fuses the activations itself (graph optimisation level "all")."""

    def __init__(self, network: nn.Module, example: torch.Tensor, threads: int):
        import onnxruntime as ort

        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings say nothing here
            torch.onnx.export(network, (example,), buffer, dynamo=False, input_names=["images"],
                              opset_version=ONNX_OPSET)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the same thread budget as torch's
        options.inter_op_num_threads = 1
        # ONNX Runtime's idle threads spin by default, and spin on while torch runs the head on the same cores
        # (measured, 2 cores: the whole model 2.5x slower than with torch's backbone); they sleep when done instead
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) images in [0, 1] -> one (B, C_l, S / s_l, S / s_l) map per level (plain NCHW)."""
        outputs = self.session.run(None, {"images": images.contiguous().numpy()})
        return [torch.from_numpy(o) for o in outputs]


class FrozenBackbone(nn.Module):
    def __init__(self, name: str, out_indices: tuple[int, ...], pretrained: bool = True, weights: str | None = None,
                 trace: bool = True, runtime: str = "torch"):
        super().__init__()
        self.trace = trace  # TorchScript-trace and freeze the network per input shape (False: run it eagerly)
        self._runners: dict[tuple, object] = {}  # per input shape: the traced graph or ONNX Runtime session
        self._runtime = check_runtime(runtime)
        self.name = name
        self.net, self.weights_source = create_feature_extractor(name, tuple(out_indices), pretrained, weights)
        self.net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.channels: list[int] = list(self.net.feature_info.channels())
        self.strides: list[int] = list(self.net.feature_info.reduction())
        cfg = self.net.pretrained_cfg
        # images arrive in [0, 1]; the network expects its own normalisation (Lite0: mean = std = 0.5)
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1), persistent=False)
        self.fingerprint = fingerprint(self.net)

    def train(self, mode: bool = True) -> "FrozenBackbone":
        # stays in eval mode whatever the caller asks: frozen BatchNorm statistics are part of the method
        return super().train(False)

    @property
    def runtime(self) -> str:
        return self._runtime

    @runtime.setter
    def runtime(self, runtime: str) -> None:
        """Switch the runtime of a built model (e.g. one loaded from a checkpoint); the features stay the same."""
        self._runtime = check_runtime(runtime)
        self._runners.clear()

    def _runner(self, x: torch.Tensor):
        """The network, traced and frozen once per input shape and device (BatchNorm folded into the convolutions,
        about 1.7x faster on a CPU); the plain module where tracing is off or fails. The batch size is part of the
        key: a graph traced for one batch size runs several times slower on another. Weights and input are in
        channels-last layout, which oneDNN's CPU convolutions prefer. On a CPU the traced graph is then optimised
        with oneDNN Graph fusion (``fused_on_cpu``)."""
        if not self.trace:
            return self.net
        key = (tuple(x.shape), x.device, x.dtype)
        if key not in self._runners:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    def traced():
                        return torch.jit.freeze(torch.jit.trace(self.net, x, check_trace=False))

                    graph = traced()  # a tracing failure goes to the eager network below
                    try:
                        graph = fused_on_cpu(graph, x)
                    except Exception:  # noqa: BLE001 - a fusion this CPU cannot run: a fresh graph, as traced
                        graph = traced()
                    self._runners[key] = graph
            except Exception:  # noqa: BLE001 - any tracing failure: stay with the eager network
                self._runners[key] = self.net
        return self._runners[key]

    def _onnx_runner(self, images: torch.Tensor) -> OnnxRunner | None:
        """With the ONNX Runtime selected and float32 images on the CPU: the session for this input shape and
        thread count (exported at the first call); otherwise None (the torch path)."""
        if self._runtime != "onnxruntime" or images.device.type != "cpu" or images.dtype != torch.float32:
            return None
        key = ("onnxruntime", tuple(images.shape), torch.get_num_threads())
        if key not in self._runners:
            network = Normalised(self.net, self.mean, self.std)
            self._runners[key] = OnnxRunner(network, images.contiguous(), torch.get_num_threads())
        return self._runners[key]

    def _apply(self, fn, recurse=True):
        """``.to()``, ``.double()`` and the like. A traced graph holds its weights frozen in, so a move to another
        device or dtype traces again; a ``.to()`` that moves nothing (a fold model sharing this backbone, placed on
        the device it is on) keeps the graphs: tracing and fusing each input shape again, per fold, cost a small
        set's fit seconds (RESULTS.md, "Fit")."""
        weight = next(self.net.parameters())
        placed = (weight.device, weight.dtype)
        moved = super()._apply(fn, recurse)
        weight = next(self.net.parameters())
        if (weight.device, weight.dtype) != placed:
            self._runners.clear()
        return moved

    def features_with_gradients(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The same features as ``forward``, from the eager network with autograd on (even inside ``no_grad``): for
        gradients with respect to the input pixels. The weights stay frozen; slower than ``forward``. Unchecked:
        ``HLGFA.features_with_gradients`` checks the images first."""
        with torch.enable_grad():
            return list(self.net((images - self.mean) / self.std))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 3, S, S) in [0, 1] -> one map per level, level l of shape (B, C_l, S / s_l, S / s_l) (the
        memory layout may be channels-last: the values and the shape are what count)."""
        onnx = self._onnx_runner(images)
        if onnx is not None:
            return onnx(images)
        x = ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        # left channels-last: the priors' blur and the head's convolutions run several times faster on it
        return [f.float() for f in self._runner(x)(x)]


def fused_on_cpu(traced: torch.jit.ScriptModule, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``traced``, its plan optimised with oneDNN Graph fusion when ``example`` is a float32 CPU tensor: each
    convolution runs with its activation as one oneDNN partition: 1.13x faster at 512 px and 1.25x at 256 px on a
    2-core CPU, the features within float rounding of the plain graph's (RESULTS.md, "Fit").

    TorchScript fuses while it optimises a graph's plan, in its first ``FUSION_RUNS`` runs, and keeps that plan
    after; the switch is process-wide, so it is on only for those runs (under a lock) and off again after, for
    whatever else the process runs. Where this build of torch has no oneDNN Graph, the graph stays as traced."""
    fusable = example.device.type == "cpu" and example.dtype == torch.float32
    if not fusable or not hasattr(torch.jit, "onednn_fusion_enabled"):
        return traced
    with _fusion_switch:
        was_on = torch.jit.onednn_fusion_enabled()
        try:
            torch.jit.enable_onednn_fusion(True)
            with torch.no_grad():
                for _ in range(FUSION_RUNS):
                    traced(example)
        finally:
            torch.jit.enable_onednn_fusion(was_on)
    return traced


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, size, size), antialiased so that downsizing does not alias fine texture.

    Each output pixel is a weighted mean of input pixels with non-negative weights (the bilinear "triangle" filter,
    widened by the scale factor), so images in [0, 1] stay in [0, 1] with no clamp (which would be one more pass
    over the whole image on the inference path)."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
