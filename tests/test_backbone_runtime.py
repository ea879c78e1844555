"""The ONNX Runtime path of the frozen backbone computes what the torch path computes.

Tolerances: both paths run the same float32 network, but with different kernels (oneDNN through TorchScript
against ONNX Runtime's MLAS, each with BatchNorm folded into the convolutions its own way), so sums are taken in
different orders. Rounding of that kind, accumulated over Lite0's ~50 layers, stays near 1e-6 of a level's largest
value (seen here: 1e-6 to 2e-6 at 256 px). We allow 1e-4 of it: about 50 times that, and far below what any real
fault would produce (a lost BatchNorm, a shifted "same" padding or a wrong output changes features by tens of percent).
The anomaly map is a z-score (level maps divided by their calibrated good-image spread): one map unit is one
standard deviation of good images, so 1e-3 map units is invisible in every threshold and metric.
"""

import importlib.util

import pytest
import torch

from hlgfa_lite import HLGFAError, load, load_image, preset
from hlgfa_lite.backbone import FrozenBackbone
from hlgfa_lite.data import load_test_split

FEATURE_RTOL = 1e-4  # of each level's largest |value|
MAP_ATOL = 1e-3  # map units (good-image standard deviations)

needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None,
    reason="onnxruntime/onnx not installed (pip install 'hlgfa-lite[fast]')")


@needs_onnxruntime
@pytest.mark.parametrize("shape", [(1, 3, 96, 96), (2, 3, 64, 64)])
def test_onnxruntime_features_match_torch_per_level(shape):
    torch_backbone = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3))
    onnx_backbone = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3), runtime="onnxruntime")
    onnx_backbone.load_state_dict(torch_backbone.state_dict())  # the same weights whatever their source
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    expected, got = torch_backbone(images), onnx_backbone(images)
    assert len(got) == len(expected) == 3
    for level, (e, g) in enumerate(zip(expected, got)):
        assert g.shape == e.shape and g.dtype == torch.float32, level
        scale = e.abs().max().item()
        assert scale > 1  # real ImageNet features, not zeros: the comparison means something
        assert (g - e).abs().max().item() <= FEATURE_RTOL * scale, level
    # one session per input shape, kept: a second call reuses it
    assert len(onnx_backbone._runners) == 1
    onnx_backbone(images)
    assert len(onnx_backbone._runners) == 1


@pytest.mark.filterwarnings("ignore:.*RANDOM weights")
def test_trace_switch_chooses_the_traced_graph_or_the_eager_network():
    """``trace=True`` (the default) runs a TorchScript graph traced and frozen for the input's shape; ``trace=False``
    the eager network. Freezing folds BatchNorm into the convolutions, so the two agree to rounding only."""
    traced = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3), pretrained=False)
    eager = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3), pretrained=False, trace=False)
    eager.load_state_dict(traced.state_dict())
    images = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    expected, got = eager(images), traced(images)
    assert not eager._runners
    assert [type(r) for r in traced._runners.values()] == [torch.jit.RecursiveScriptModule]
    for level, (e, g) in enumerate(zip(expected, got)):
        scale = e.abs().max().item()
        assert g.shape == e.shape and scale > 0, level
        assert (g - e).abs().max().item() <= FEATURE_RTOL * scale, level


@pytest.mark.filterwarnings("ignore:.*RANDOM weights")
def test_features_with_gradients_are_the_forward_features_and_reach_the_pixels():
    """Lesson 01's receptive fields: the same features as ``forward`` (to rounding), differentiable in the input,
    and the frozen weights still get no gradient."""
    backbone = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3), pretrained=False)
    images = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    features = backbone.features_with_gradients(images)
    for level, (e, g) in enumerate(zip(backbone(images.detach()), features)):
        assert g.shape == e.shape and (g - e).abs().max().item() <= FEATURE_RTOL * e.abs().max().item(), level
    (pixels,) = torch.autograd.grad(features[0][0, :, 1, 1].sum(), images)  # a level-1 cell near the top left
    assert pixels[0, :, :8, :8].abs().sum() > 0 and pixels[0, :, 32:, 32:].abs().sum() == 0  # a local field
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())


def test_the_traced_graph_runs_fused_by_onednn_on_a_cpu_with_the_plain_graphs_features(monkeypatch):
    """On a CPU the traced graph's plan fuses each convolution with its activation (oneDNN Graph): the features
    agree with the plain traced graph's to rounding, and the process-wide switch is off again afterwards."""
    from hlgfa_lite import backbone

    fused = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3))
    images = torch.rand((1, 3, 128, 128), generator=torch.Generator().manual_seed(0))
    got = fused(images)
    assert "oneDNNFusion" in str(torch.jit.last_executed_optimized_graph())
    assert not torch.jit.onednn_fusion_enabled()
    monkeypatch.setattr(backbone, "fused_on_cpu", lambda traced, example: traced)
    plain = FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3))
    expected = plain(images)
    for _ in range(backbone.FUSION_RUNS):  # the plain graph's own plan, settled with the switch off
        expected = plain(images)
    assert "oneDNNFusion" not in str(torch.jit.last_executed_optimized_graph())
    for level, (e, g) in enumerate(zip(expected, got)):
        scale = e.abs().max().item()
        assert g.shape == e.shape and scale > 1, level
        assert (g - e).abs().max().item() <= FEATURE_RTOL * scale, level


@pytest.mark.filterwarnings("ignore:.*RANDOM weights")
def test_a_model_sharing_the_backbone_keeps_its_traced_graphs_and_a_real_move_traces_again():
    """A cross-fit's fold model shares the final model's backbone and is placed with ``.to(device)``: a move that
    moves nothing must keep the traced graphs (tracing one shape costs about 0.7 s, once per fold and shape
    before); a move to another dtype must trace again, or the frozen float32 weights would compute the result."""
    from hlgfa_lite import HLGFA

    model = HLGFA(preset("lite", normality="none"), pretrained=False)
    images = torch.rand((1, 3, 64, 64), generator=torch.Generator().manual_seed(0))
    expected = model.backbone(images)
    graphs = dict(model.backbone._runners)
    assert len(graphs) == 1
    fold_model = HLGFA(model.cfg, backbone=model.backbone, init_seed=1).to(model.device).eval()
    assert fold_model.backbone._runners == graphs  # the same graph objects, not traced again
    model.backbone.double()
    assert not model.backbone._runners
    got = model.backbone(images.double())
    assert [key[2] for key in model.backbone._runners] == [torch.float64]  # float64 weights, not the frozen float32
    for level, (e, g) in enumerate(zip(expected, got)):
        scale = e.abs().max().item()
        assert scale > 0 and (g.float() - e).abs().max().item() <= FEATURE_RTOL * scale, level


@needs_onnxruntime
def test_onnxruntime_anomaly_maps_and_scores_match_torch(fitted, sample):
    _, _, run_dir = fitted
    reference = load(run_dir)
    fast = load(run_dir, backbone_runtime="onnxruntime")
    assert reference.backbone.runtime == "torch" and fast.backbone.runtime == "onnxruntime"
    samples = load_test_split(sample)
    images = [load_image(s.path) for s in (samples[0], samples[-1])]  # a good and a defective image
    for image in images:
        expected_map, expected_score = reference.score_batch(image[None])
        got_map, got_score = fast.score_batch(image[None])
        assert got_map.shape == expected_map.shape
        assert expected_map.std() > 0.1  # a real map, not a constant
        assert (got_map - expected_map).abs().max().item() <= MAP_ATOL
        assert abs(got_score.item() - expected_score.item()) <= MAP_ATOL


def test_onnxruntime_missing_is_one_clear_line(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime"
                        else real_find_spec(name, *a))
    with pytest.raises(HLGFAError, match=r"pip install 'hlgfa-lite\[fast\]'"):
        FrozenBackbone("tf_efficientnet_lite0", (1, 2, 3), pretrained=False, runtime="onnxruntime")


def test_unknown_runtime_is_refused():
    with pytest.raises(HLGFAError, match="backbone_runtime must be one of"):
        preset("lite", backbone_runtime="tensorrt")


def test_cli_refuses_an_unknown_runtime_in_one_line(fitted, sample, capsys):
    from hlgfa_lite.tools.cli import main

    _, _, run_dir = fitted
    assert main(["evaluate", str(run_dir), str(sample), "--backbone-runtime", "tensorrt", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: backbone_runtime must be one of") and "\n" not in err


@pytest.mark.parametrize("size_in, size_out", [(900, 512), (512, 256), (97, 64)])
def test_resize_keeps_images_in_the_unit_range(size_in, size_out):
    """The views are made without a clamp: that is right only while the resize never overshoots. A sharp 0/1 edge
    makes a filter with negative lobes overshoot (antialiased bicubic: to -0.046 and 1.041 at 97 -> 64 px)."""
    from hlgfa_lite.backbone import resize

    board = ((torch.arange(size_in)[:, None] + torch.arange(size_in)[None, :]) % 2).float()
    edge = (torch.arange(size_in) < size_in // 2).float().expand(size_in, size_in)
    images = torch.stack([board, edge, torch.rand(size_in, size_in)])[None]
    out = resize(images, size_out)
    assert out.shape == (1, 3, size_out, size_out)
    assert out.min().item() >= -1e-6 and out.max().item() <= 1 + 1e-6
