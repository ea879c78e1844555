"""The demo keeps its word about visitors' files, tested on a real server.

Each test runs the Space's entry point (``demo/app.py``) as a subprocess on a free loopback port, with its own
temporary folder (``TMPDIR``), so every file the server writes lands where the test can list it. A visitor sends
an image to Inspect and fits a head on three images (3 steps) through ``gradio_client``, like the page does; then
the server is stopped as people stop servers: SIGTERM (``docker stop``, systemd), SIGINT (Ctrl-C), or SIGKILL
followed by the next start. Afterwards no file the visitor sent or made may be left: no upload, no result
picture, no training image, no checkpoint.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port_on_loopback
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")  # comes with gradio
pytest.importorskip("gradio")

ENTRY_POINT = Path(__file__).resolve().parents[1] / "demo" / "app.py"
BOTTLE = "bottle (bundled model)"  # the Inspect tab's model choice (hlgfa_lite.demo.app.BOTTLE)
VISITOR = "visitor"  # every file a visitor sends carries this in its name, so what is left can be told apart
STARTUP_SECONDS = 300  # a deadline for a slow, shared machine, not a measurement
# what the interpreter and libraries (not the demo) may leave in TMPDIR: caches holding no visitor data
NOT_VISITOR_FILES = ("matplotlib-", "torchinductor", "pytest-")


class Server:
    """The demo in a subprocess, its temporary folder, and its log (shown when something fails)."""

    def __init__(self, tmp_root: Path):
        self.tmp_root, self.port = tmp_root, free_port_on_loopback()
        self.url = f"http://127.0.0.1:{self.port}/"
        work = tmp_root / "cwd"
        work.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp_root), "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(self.port), "HLGFA_DEMO_FIT_STEPS": "3", "HLGFA_DEMO_THREADS": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("GRADIO_TEMP_DIR", None)  # Gradio's default cache (TMPDIR/gradio) is listed too
        self.log_path = tmp_root.parent / f"server-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, str(ENTRY_POINT)], env=env, cwd=work, stdout=log,
                                            stderr=subprocess.STDOUT)
        self._wait_until_up()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited with {self.process.returncode} while starting:\n{self.log()}")
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.process.kill()
        pytest.fail(f"the demo did not answer within {STARTUP_SECONDS} s:\n{self.log()}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"the demo did not exit within 120 s of signal {signum}:\n{self.log()}")

    def kill_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def tmp_root(tmp_path):
    root = tmp_path / "server-tmp"
    root.mkdir()
    return root


@pytest.fixture
def visitor_images(tmp_path, sample):
    """Three good bottles and one image to inspect, renamed and changed by a pixel so that their bytes (and so
    Gradio's content-addressed cache paths) are this visitor's own."""
    folder = tmp_path / "visitor-side"
    folder.mkdir()
    paths = []
    for i, source in enumerate(sorted((sample / "train" / "good").glob("*.png"))[:4]):
        image = Image.open(source).convert("RGB")
        image.putpixel((0, 0), (i, 7, 11))
        path = folder / f"{VISITOR}-{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def visit(server: Server, images: list[Path]):
    """A visitor's session: inspect one image, fit a head on the others. Returns the client (still connected) and
    the server-side paths of what it got back (result picture, checkpoint zip)."""
    client = gradio_client.Client(server.url, verbose=False, download_files=False)
    overlay, *_ = client.predict(gradio_client.handle_file(str(images[0])), BOTTLE, 1.0, api_name="/inspect")
    summary, checkpoint, _ = client.predict([gradio_client.handle_file(str(p)) for p in images[1:]],
                                            api_name="/fit")
    assert "Fitted on" in summary, summary
    return client, [Path(overlay["path"]), Path(checkpoint["path"])]


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def visitor_files(root: Path) -> list[Path]:
    """Every file under ``root`` that the demo wrote (anything but a library's own cache)."""
    return [p for p in files_under(root)
            if not any(part.startswith(NOT_VISITOR_FILES) for part in p.relative_to(root).parts)]


def assert_the_visit_left_files(root: Path, returned: list[Path]) -> None:
    """Before the stop: the visitor's uploads, results and checkpoint are on the server's disk (so the listing
    after the stop can see them if they stay)."""
    names = {p.name for p in files_under(root)}
    assert {f"{VISITOR}-{i}.png" for i in range(4)} <= names, sorted(names)
    assert all(path.is_file() and root in path.parents for path in returned), returned
    assert any(p.suffix == ".safetensors" for p in files_under(root))  # the fitted head itself


def leftovers(root: Path, visitor_marker: str, returned: list[Path]) -> list[Path]:
    """The files of one visitor still on disk: its uploads (by name), what it got back, its fitted head."""
    return [p for p in files_under(root)
            if visitor_marker in p.name or p in returned or p.suffix in (".safetensors", ".zip")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sessions_and_servers_that_end_leave_no_visitor_file(tmp_root, visitor_images, signum):
    """A visitor who closes the page (here: the client, whose heartbeat then stops) takes their uploads, pictures
    and fit with them while the server runs; another visitor, still connected, keeps theirs until the server is
    stopped, which deletes every file the demo wrote and exits with status 0."""
    server = Server(tmp_root)
    try:
        leaving, returned = visit(server, visitor_images)
        staying = gradio_client.Client(server.url, verbose=False, download_files=False)
        other_image = visitor_images[0].with_name("other-0.png")
        Image.open(visitor_images[0]).rotate(90).save(other_image)
        overlay, *_ = staying.predict(gradio_client.handle_file(str(other_image)), BOTTLE, 1.0, api_name="/inspect")
        assert_the_visit_left_files(tmp_root, returned)
        leaving.close()
        deadline = time.monotonic() + 120  # Gradio notices the closed heartbeat within seconds
        while time.monotonic() < deadline and leftovers(tmp_root, VISITOR, returned):
            time.sleep(0.5)
        assert leftovers(tmp_root, VISITOR, returned) == [], server.log()
        assert leftovers(tmp_root, "other-0", [Path(overlay["path"])]) != []  # the other session's are kept
        exit_code = server.stop(signum)
        staying.close()
    finally:
        server.kill_if_running()
    assert exit_code == 0, server.log()
    assert visitor_files(tmp_root) == [], server.log()


def test_what_a_hard_kill_leaves_is_swept_at_the_next_start(tmp_root, visitor_images):
    first = Server(tmp_root)
    try:
        client, returned = visit(first, visitor_images)
        first.stop(signal.SIGKILL)  # no handler runs: the files stay on disk
        client.close()
    finally:
        first.kill_if_running()
    assert_the_visit_left_files(tmp_root, returned)
    left_by_the_killed_server = visitor_files(tmp_root)
    second = Server(tmp_root)  # the next start removes what the dead process left
    try:
        assert [p for p in left_by_the_killed_server if p.exists()] == [], second.log()
        assert second.stop(signal.SIGTERM) == 0, second.log()
    finally:
        second.kill_if_running()
    assert visitor_files(tmp_root) == [], second.log()
