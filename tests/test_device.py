"""Device handling without a GPU: the one device rule, and plotting fed with tensors that NumPy cannot read
directly (as CUDA tensors cannot)."""

import numpy as np
import pytest
import torch

from hlgfa_lite import HLGFAError
from hlgfa_lite.tools import cli
from hlgfa_lite import device as device_module
from hlgfa_lite.device import resolve_device
from hlgfa_lite.tools.visualize import colorize, outline, overlay, panel_figure, to_uint8_image


class OffCPU(torch.Tensor):
    """Acts like a tensor on a GPU towards NumPy: ``.numpy()`` and ``np.asarray`` fail until ``.cpu()``."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first.")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


def off_cpu(tensor: torch.Tensor) -> OffCPU:
    return tensor.as_subclass(OffCPU)


def test_the_stand_in_really_refuses_numpy():
    fake = off_cpu(torch.rand(4, 4))
    with pytest.raises(TypeError):
        np.asarray(fake)
    with pytest.raises(TypeError):
        fake.numpy()
    assert isinstance(fake.detach().float(), OffCPU) and fake.cpu().numpy().shape == (4, 4)


def test_pictures_accept_tensors_off_the_cpu():
    image, anomaly_map = torch.rand(3, 32, 40), torch.rand(32, 40)
    mask = anomaly_map > 0.7
    expected = outline(overlay(image, anomaly_map, 0.2, 0.9), mask.numpy())
    drawn = outline(overlay(off_cpu(image), off_cpu(anomaly_map), 0.2, 0.9), off_cpu(mask))
    assert np.array_equal(drawn, expected)
    assert np.array_equal(colorize(off_cpu(anomaly_map.half()), 0, 1), colorize(anomaly_map.half().float(), 0, 1))
    assert to_uint8_image(off_cpu(image)).shape == (32, 40, 3)
    figure = panel_figure([{"image": off_cpu(image), "map": off_cpu(anomaly_map), "title": "x",
                            "mask": off_cpu(mask)}], 0.2, 0.9)
    assert len(figure.axes) == 2


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "mps_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(device_module, "mps_available", lambda: False)
    assert resolve_device("auto") == resolve_device("") == resolve_device("CPU") == "cpu"


def test_a_missing_or_unknown_device_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "mps_available", lambda: False)
    for name, words in [("cuda", "no CUDA GPU"), ("cuda:1", "no CUDA GPU"), ("mps", "MPS"), ("tpu", "unknown")]:
        with pytest.raises(HLGFAError, match=words):
            resolve_device(name)


@pytest.mark.parametrize("command", ["fit", "evaluate", "predict", "quickstart", "demo"])
def test_every_command_takes_the_device_from_one_argument(command):
    positional = {"fit": ["data", "--out", "o"], "evaluate": ["run", "data"], "predict": ["run", "x", "--out", "o"],
                  "quickstart": [], "demo": []}[command]
    args = cli.build_parser().parse_args([command, *positional, "--device", "cpu"])
    assert args.device == "cpu"


def test_demo_command_hands_its_device_to_the_demo(monkeypatch):
    pytest.importorskip("gradio")
    from hlgfa_lite.demo import app

    seen = {}
    monkeypatch.setattr(app, "launch_demo", lambda run_dir, device, **kwargs: seen.update(device=device))
    assert cli.main(["demo", "--device", "cpu", "--port", "1"]) == 0
    assert seen == {"device": "cpu"}
