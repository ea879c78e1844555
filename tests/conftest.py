import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never wait for the Hub
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

from hlgfa_lite import HLGFA, fit, preset, save, train_image_paths  # noqa: E402
from hlgfa_lite.assets import sample_dir  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

# small views keep the suite fast; the method is the same at every size
SMALL = dict(hr_size=256, lr_size=128)


@pytest.fixture(autouse=True)
def same_random_inputs_every_run():
    """Each test starts from one seed, so an input drawn without a generator is the same in every run: a test
    fails for its code, never for its dice (an unlucky draw once turned a noisy colour image grey through JPEG)."""
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sample():
    return sample_dir()


@pytest.fixture(scope="session")
def lite_model():
    """The real lite preset (512/256 px, ImageNet Lite0 weights), untrained head."""
    return HLGFA(preset("lite")).eval()


@pytest.fixture(scope="session")
def fitted(sample, tmp_path_factory):
    """A small model fitted for a few steps on the bundled sample, its report and its checkpoint folder."""
    model = HLGFA(preset("lite", steps=40, **SMALL))
    report = fit(model, train_image_paths(sample), progress=False)
    run_dir = save(model, tmp_path_factory.mktemp("run") / "model")
    return model, report, run_dir


def free_port_on_loopback() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the demo's test servers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
