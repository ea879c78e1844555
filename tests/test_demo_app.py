"""Integration test: the demo really served on 127.0.0.1 (free port), called through gradio_client like a visitor."""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port_on_loopback
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")  # comes with gradio
from hlgfa_lite.demo import app  # noqa: E402
from hlgfa_lite.demo import examples as demo_examples  # noqa: E402
from hlgfa_lite.demo import models, uploads, visitor_files, visitor_fit  # noqa: E402


@pytest.fixture(scope="module")
def server():
    demo = app.launch_demo(server_name="127.0.0.1", server_port=free_port_on_loopback(), torch_threads=None,
                           prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def examples():
    return dict(demo_examples.example_images())


def inspect(url, path, model=app.BOTTLE, sensitivity=1.0):
    client = gradio_client.Client(url, verbose=False)
    return client.predict(gradio_client.handle_file(str(path)), model, sensitivity, api_name="/inspect")


def mask_pixels(mask_path) -> int:
    return int((np.asarray(Image.open(mask_path).convert("L")) > 127).sum())


def test_good_scores_lower_than_defective_and_defect_has_a_mask(server, examples):
    good_overlay, good_mask, good_score, good_verdict = inspect(server, examples["good"])
    bad_overlay, bad_mask, bad_score, bad_verdict = inspect(server, examples["broken large"])
    assert good_score < bad_score
    assert mask_pixels(bad_mask) > 0
    assert mask_pixels(bad_mask) > mask_pixels(good_mask)
    assert Image.open(bad_overlay).size == Image.open(examples["broken large"]).size
    assert "Normal" in good_verdict or "Anomalous" in good_verdict
    assert "Anomalous" in bad_verdict


def test_bad_uploads_get_a_message_and_the_server_keeps_answering(server, examples, tmp_path):
    text = tmp_path / "letter.png"
    text.write_text("not an image at all")
    overlay, mask, score, verdict = inspect(server, text)
    assert overlay is None and score is None and "not an image" in verdict
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(Path(examples["good"]).read_bytes()[:300])
    assert "✖" in inspect(server, corrupt)[3]
    _, _, score, _ = inspect(server, examples["good"])  # still alive
    assert score is not None


def test_a_sketch_on_a_file_that_is_no_image_gets_a_message(server, examples, tmp_path):
    """The sketch tab's editor decodes its background in Gradio's own preprocessing, before the demo's handler: a
    text file renamed .png reached the visitor as Gradio's generic "upstream app raised an exception"."""
    text = tmp_path / "letter.png"
    text.write_text("not an image at all")
    client = gradio_client.Client(server, verbose=False)
    picture = gradio_client.handle_file(str(text))
    with pytest.raises(Exception, match="The editor could not read that picture: upload a PNG or JPEG image"):
        client.predict({"background": picture, "layers": [], "composite": picture, "id": None}, 1.0,
                       api_name="/draw")
    assert inspect(server, examples["good"])[2] is not None  # still alive


def test_huge_image_is_downscaled_and_oversized_upload_refused(server, examples, tmp_path):
    """10000 x 10000 px (past PIL's bomb warning) gets a result; a file over the upload bound gets HTTP 413."""
    huge = tmp_path / "huge.png"
    Image.new("RGB", (10000, 10000), (90, 70, 50)).save(huge, compress_level=1)
    overlay, mask, score, verdict = inspect(server, huge)
    assert score is not None and "downscaled from 10000 x 10000" in verdict
    assert max(Image.open(overlay).size) == uploads.DEMO_MAX_SIDE
    # the server's upload route itself refuses a file over the bound, before any of our code runs
    too_big = ("big.png", bytes(uploads.MAX_UPLOAD_BYTES + 1), "image/png")
    assert httpx.post(server + "gradio_api/upload", files={"files": too_big}, timeout=60).status_code == 413
    assert inspect(server, examples["good"])[2] is not None  # and keeps answering


def test_my_part_without_a_fit_is_a_message(server, examples):
    assert "not fitted your own part" in inspect(server, examples["good"], model=app.MY_PART)[3]


def test_eight_parallel_clients_all_succeed(server, examples):
    paths = [examples["good"], examples["broken small"]] * 8  # 16 requests from 8 clients at once

    def call(path):
        return inspect(server, path)[2]

    with ThreadPoolExecutor(max_workers=8) as pool:
        scores = list(pool.map(call, paths))
    assert all(isinstance(s, float) for s in scores)
    assert len({round(s, 4) for s in scores[0::2]}) == 1  # the same image scores the same under load


def test_fit_then_inspect_with_my_part_in_one_session(server, sample, monkeypatch):
    monkeypatch.setattr(visitor_fit, "FIT_STEPS", 2)  # the server runs in this process: keep the test short
    client = gradio_client.Client(server, verbose=False)
    assert "at least 2" in client.predict([], api_name="/fit")[0]
    paths = sorted((sample / "train" / "good").glob("*.png"))[:3]
    summary, zip_path, model_choice = client.predict([gradio_client.handle_file(str(p)) for p in paths],
                                                     api_name="/fit")
    assert "Fitted on" in summary and zip_path.endswith(".zip") and model_choice == app.MY_PART
    # "Stop" with no fit running leaves the last fit's summary as it is (it used to say "Stopping the fit…")
    assert client.predict(api_name="/stop_fit") == {"__type__": "update"}
    overlay, mask, score, verdict = client.predict(gradio_client.handle_file(str(paths[0])), app.MY_PART, 1.0,
                                                   api_name="/inspect")
    assert score is not None and "✖" not in verdict


def test_stop_ends_a_running_fit_and_frees_its_slot(server, sample, monkeypatch):
    """"Stop" during a fit says so and ends it between two steps; the next fit then runs (one fit at a time)."""
    import time

    monkeypatch.setattr(visitor_fit, "FIT_STEPS", 100_000)  # far longer than the test waits
    client = gradio_client.Client(server, verbose=False)
    images = [gradio_client.handle_file(str(p)) for p in sorted((sample / "train" / "good").glob("*.png"))[:3]]
    job = client.submit(images, api_name="/fit")
    deadline = time.monotonic() + 120
    while not any("training the head" in (unit.desc or "") for unit in job.status().progress_data or []):
        assert time.monotonic() < deadline and not job.done(), "the fit never reached its training steps"
        time.sleep(0.2)
    assert client.predict(api_name="/stop_fit") == "Stopping the fit…"
    monkeypatch.setattr(visitor_fit, "FIT_STEPS", 2)
    deadline = time.monotonic() + 60
    while "busy" in (summary := client.predict(images, api_name="/fit")[0]):  # the stopped fit still finishing
        assert time.monotonic() < deadline, summary
        time.sleep(0.5)
    assert "Fitted on" in summary


def call_raw(url: str, api_name: str, data: list) -> str:
    """An API call as a hostile client makes it, with file paths of its choosing; returns the event stream's text."""
    event = httpx.post(url + f"gradio_api/call/{api_name}", json={"data": data}, timeout=60).json()["event_id"]
    return httpx.get(url + f"gradio_api/call/{api_name}/{event}", timeout=120).text


def test_no_visitor_reaches_files_the_demo_wrote_or_the_server_holds(server, examples):
    """Folders are never listed, server files outside the cache and the sample never served, and a path to a file
    the demo wrote (a result picture, as another visitor's would be) is refused as an input."""
    client = gradio_client.Client(server, verbose=False, download_files=False)
    picture = Path(client.predict(gradio_client.handle_file(examples["good"]), app.BOTTLE, 1.0,
                                  api_name="/inspect")[0]["path"])
    assert httpx.get(server + f"gradio_api/file={picture}", timeout=60).status_code == 200  # its owner gets it
    for forbidden in (picture.parent, visitor_files.process_dir(), visitor_files.DEMO_ROOT, "/etc/passwd",
                      models.BUNDLED_CHECKPOINT / "model.json"):
        assert httpx.get(server + f"gradio_api/file={forbidden}", timeout=60).status_code == 403, forbidden
    as_input = call_raw(server, "inspect", [{"path": str(picture), "meta": {"_type": "gradio.FileData"}},
                                            app.BOTTLE, 1.0])
    assert "Only images uploaded from this page" in as_input
    outside = call_raw(server, "inspect", [{"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}},
                                           app.BOTTLE, 1.0])
    assert "event: error" in outside and "Normal" not in outside
    client.close()
