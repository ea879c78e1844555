"""Unit tests of the demo's modules (hlgfa_lite/demo/: uploads, rendering, visitor_fit, ...): reading every kind
of upload, scoring, drawing, fitting.

No server here: the functions are called directly, with the bundled checkpoint the Space serves.
"""

import io
import re
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hlgfa_lite import HLGFAError, data, load
from hlgfa_lite.demo import examples as demo_examples
from hlgfa_lite.demo import models, rendering, uploads, visitor_files, visitor_fit


@pytest.fixture(scope="module")
def store():
    return models.ModelStore()  # the bundled bottle checkpoint


@pytest.fixture(scope="module")
def examples():
    return dict(demo_examples.example_images())


def save_image(tmp_path, image: Image.Image, name: str, **kwargs) -> Path:
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


# --- reading uploads: every bad input is one friendly HLGFAError, every odd-but-valid input works -------------
@pytest.mark.parametrize("path", [None, ""])
def test_no_upload_is_a_message(path):
    with pytest.raises(HLGFAError, match="No image"):
        uploads.read_upload(path)


def test_missing_file_is_a_message(tmp_path):
    with pytest.raises(HLGFAError, match="did not arrive"):
        uploads.read_upload(tmp_path / "gone.png")


def test_empty_file_is_a_message(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(HLGFAError, match="empty"):
        uploads.read_upload(path)


def test_non_image_is_a_message(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 50)
    with pytest.raises(HLGFAError, match="not an image"):
        uploads.read_upload(path)


def test_truncated_image_is_a_message(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(HLGFAError, match="damaged or truncated"):
        uploads.read_upload(path)


def test_too_large_file_is_a_message(tmp_path, monkeypatch):
    path = save_image(tmp_path, Image.new("RGB", (64, 64)), "big.png")
    monkeypatch.setattr(uploads, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(HLGFAError, match="limit is"):
        uploads.read_upload(path)


def test_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    path = save_image(tmp_path, Image.new("RGB", (100, 100)), "wide.png")
    monkeypatch.setattr(data, "MAX_PIXELS", 5000)
    with pytest.raises(HLGFAError, match="million pixels"):
        uploads.read_upload(path)


def test_pil_decompression_bomb_error_is_a_message(tmp_path, monkeypatch):
    path = save_image(tmp_path, Image.new("RGB", (100, 100)), "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL raises above 2x this, on open
    with pytest.raises(HLGFAError, match="more pixels"):
        uploads.read_upload(path)


@pytest.mark.parametrize("mode, expected_note", [
    ("L", "grayscale"), ("RGBA", "RGBA"), ("I;16", "16-bit"), ("CMYK", "CMYK"), ("P", "palette"), ("1", "black")])
def test_every_mode_becomes_rgb_in_unit_range(tmp_path, mode, expected_note):
    rng = np.random.default_rng(1)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16))
        assert image.mode.startswith("I;16")
    else:
        image = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).convert(mode)
    path = save_image(tmp_path, image, "odd.jpg" if mode == "CMYK" else "odd.tiff" if mode == "I;16" else "odd.png")
    loaded = uploads.read_upload(path)
    assert loaded.tensor.shape == (3, 40, 50)
    assert loaded.tensor.dtype == torch.float32
    assert 0 <= loaded.tensor.min() and loaded.tensor.max() <= 1 and loaded.tensor.max() > 0
    assert any(expected_note in note for note in loaded.notes)


def test_sixteen_bit_keeps_its_full_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    loaded = uploads.read_upload(save_image(tmp_path, Image.fromarray(ramp), "ramp.png"))
    assert loaded.tensor.min() == 0 and loaded.tensor.max() == pytest.approx(1.0)


def test_one_pixel_image_is_scored_and_shown_enlarged(tmp_path, store):
    loaded = uploads.read_upload(save_image(tmp_path, Image.new("RGB", (1, 1), (90, 80, 70)), "dot.png"))
    assert loaded.tensor.shape == (3, 1, 1)
    assert any("very small" in note for note in loaded.notes)
    result = rendering.inspect_image(store.model, loaded)
    assert result.anomaly_map.shape == (1, 1) and np.isfinite(result.score)
    shown = rendering.render(store.model, result)
    assert min(shown.overlay.shape[:2]) >= rendering.DISPLAY_MIN_SIDE
    assert "very small" in shown.verdict


def test_huge_png_is_downscaled_without_warnings(tmp_path):
    """10000 x 10000 is past PIL's decompression-bomb *warning* (89 M pixels): no warning or error may escape."""
    image = Image.new("RGB", (10000, 10000), (120, 130, 140))
    path = save_image(tmp_path, image, "huge.png", compress_level=1)
    del image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = uploads.read_upload(path)
    assert max(loaded.tensor.shape[1:]) == uploads.DEMO_MAX_SIDE
    assert loaded.tensor.shape == (3, 1024, 1024)
    assert any("downscaled from 10000 x 10000" in note for note in loaded.notes)


def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = save_image(tmp_path, Image.new("RGB", (8000, 2000), (10, 200, 30)), "huge.jpg", quality=80)
    loaded = uploads.read_upload(path)
    assert loaded.tensor.shape == (3, 256, 1024)  # aspect ratio kept
    assert loaded.tensor[1].mean() > 0.7  # still green


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (60, 20), (0, 0, 0))
    exif = image.getexif()
    exif[274] = 6  # rotate 90 degrees on display
    path = save_image(tmp_path, image, "rotated.jpg", exif=exif)
    assert uploads.read_upload(path).tensor.shape == (3, 60, 20)


# --- scoring and rendering -----------------------------------------------------------------------------------
def test_defect_scores_higher_than_good_and_gets_a_mask(store, examples):
    good = rendering.inspect_image(store.model, uploads.read_upload(examples["good"]))
    broken = rendering.inspect_image(store.model, uploads.read_upload(examples["broken large"]))
    assert broken.score > good.score
    good_shown, broken_shown = rendering.render(store.model, good), rendering.render(store.model, broken)
    assert broken_shown.mask.any() and broken_shown.defect_fraction > good_shown.defect_fraction
    assert broken_shown.anomalous == store.model.is_anomalous(broken.score)
    assert broken_shown.state == store.model.verdict(broken.score)
    assert ("Anomalous" in broken_shown.verdict) == broken_shown.anomalous
    assert broken_shown.overlay.shape == broken.image.shape  # at the image's own size
    assert broken_shown.overlay.dtype == np.uint8


def test_colour_scale_is_fixed_not_per_image(store, examples):
    """Per-image min-max would paint the brightest part of a good image red; the calibrated scale does not."""
    good = rendering.inspect_image(store.model, uploads.read_upload(examples["good"]))
    cal = store.model.calibration
    assert good.anomaly_map.max() < cal.map_vmax
    dimmed = rendering.Inspected(good.image, good.anomaly_map * 0.5, good.score)
    assert not np.array_equal(rendering.render(store.model, good).overlay,
                              rendering.render(store.model, dimmed).overlay)


def test_pixel_threshold_follows_sensitivity(store):
    cal = store.model.calibration
    assert rendering.pixel_threshold(cal, 1.0) == pytest.approx(cal.pixel_threshold)
    threshold = rendering.pixel_threshold
    assert threshold(cal, 2.0) < threshold(cal, 1.0) < threshold(cal, 0.5)


def test_higher_sensitivity_flags_more(store, examples):
    result = rendering.inspect_image(store.model, uploads.read_upload(examples["broken small"]))
    low, high = rendering.render(store.model, result, 0.5), rendering.render(store.model, result, 4.0)
    assert high.defect_fraction >= low.defect_fraction
    assert high.anomalous or not low.anomalous


def test_legend_spans_the_colour_map(store):
    html = rendering.colour_scale_legend(store.model.calibration, stops=5)
    colours = [tuple(map(int, c.split(","))) for c in re.findall(r"rgb\((\d+,\d+,\d+)\)", html)]
    assert len(colours) == 5
    assert colours[0][2] > colours[0][0] and colours[-1][0] > colours[-1][2]  # blue on the left, red on the right


def test_examples_have_good_first_and_every_defect_type(examples):
    labels = list(examples)
    assert labels[0] == "good"
    assert {"broken large", "broken small", "contamination"} <= set(labels)
    assert all(Path(path).is_file() for path in examples.values())


# --- drawing a defect ----------------------------------------------------------------------------------------
def test_editor_value_gives_composite_and_painted_region(store):
    background = np.asarray(Image.open(demo_examples.good_images()[0]).convert("RGBA"))
    layer = np.zeros_like(background)
    layer[100:110, 60:260] = (20, 10, 5, 255)  # a dark scratch
    composite = background.copy()
    composite[100:110, 60:260] = (20, 10, 5, 255)
    loaded, painted = uploads.read_editor_value({"background": background, "layers": [layer], "composite": composite})
    assert loaded.tensor.shape == (3, *background.shape[:2])
    assert painted.sum() == 10 * 200
    scratched = rendering.inspect_image(store.model, loaded, painted)
    clean = rendering.inspect_image(store.model, uploads.LoadedImage(
        loaded.tensor.new_tensor(background[..., :3]).permute(2, 0, 1) / 255))
    assert scratched.anomaly_map[painted].mean() > clean.anomaly_map[painted].mean()
    assert rendering.render(store.model, scratched).overlay[painted].shape[0] > 0


@pytest.mark.parametrize("value", [None, {"background": None, "layers": [], "composite": None}])
def test_empty_editor_is_a_message(value):
    with pytest.raises(HLGFAError, match="No image"):
        uploads.read_editor_value(value)


# --- look inside ----------------------------------------------------------------------------------------------
def test_look_inside_draws_every_level(store, examples):
    gallery = rendering.look_inside(store.model, uploads.read_upload(examples["contamination"]))
    levels = len(store.model.backbone.channels)
    assert len(gallery) == levels + 1  # the views and the fused map, then one panel per level
    for picture, caption in gallery:
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
        assert picture.shape[0] > 300 and picture.shape[1] > 300  # large enough to read on a phone
        assert picture.std() > 10 and caption  # not blank, and captioned
    assert [c.startswith(f"Level {i}") for i, (_, c) in enumerate(gallery)][1:] == [True] * levels


def test_every_bundled_test_image_is_offered_with_a_caption(sample):
    offered = demo_examples.bundled_test_images()
    assert sorted(Path(p) for _, p in offered) == sorted((sample / "test").glob("*/*.png"))
    assert offered[0][0].startswith("good") and len({c for c, _ in offered}) == len(offered)


def test_code_link_comes_from_the_one_place_that_names_the_repository():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert demo_examples.code_url() == pyproject["project"]["urls"]["Repository"]


def test_fit_lengths_offer_quick_and_normal_with_a_time_estimate():
    lengths = dict(visitor_fit.fit_lengths())  # label -> key
    steps = visitor_fit.FIT_STEPS
    assert [visitor_fit.fit_steps(key) for key in lengths.values()] == [max(1, steps // 3), steps]
    assert all(label.startswith(key) and f"{visitor_fit.fit_steps(key)} steps, about " in label
               for label, key in lengths.items())
    quick, normal = (visitor_fit.fit_estimate(visitor_fit.fit_steps(key), 20) for key in ("quick", "normal"))
    assert quick != normal


def test_an_in_browser_fit_takes_the_librarys_batch_for_a_small_set_and_the_length_chosen():
    """The visitor's length sets the steps; the batch is the one ``training.head_batch`` gives any set a visitor can
    bring (at most MAX_FIT_IMAGES), so the demo and the library do not train small sets two ways."""
    from hlgfa_lite import preset
    from hlgfa_lite.training import head_batch, head_steps

    for n_images in (visitor_fit.MIN_FIT_IMAGES, visitor_fit.FEW_FIT_IMAGES, visitor_fit.MAX_FIT_IMAGES):
        cfg = visitor_fit.fit_config(visitor_fit.fit_steps("quick"), seed=3)
        assert head_steps(cfg, n_images) == visitor_fit.fit_steps("quick") and cfg.seed == 3
        assert head_batch(cfg, n_images) == head_batch(preset("lite"), n_images) == preset("lite").min_batch_size


def test_fit_summary_command_works_as_written(store, sample, tmp_path, monkeypatch):
    """The hint after a fit: unzip, then `hlgfa-lite predict my_part_lite my_images --out results` must run."""
    from hlgfa_lite.tools.cli import main

    paths = [str(p) for p in sorted((sample / "train" / "good").glob("*.png"))[:3]]
    part = visitor_fit.fit_part(paths, store, steps=1)
    command = next(line for line in part.summary.splitlines() if line.startswith("hlgfa-lite predict"))
    monkeypatch.chdir(tmp_path)
    zipfile.ZipFile(part.zip_path).extractall(tmp_path)
    (tmp_path / "my_images").mkdir()
    shutil.copy(paths[0], tmp_path / "my_images")
    assert main(command.split()[1:]) == 0
    assert (tmp_path / "results" / "scores.csv").is_file()
    visitor_fit.remove_fitted(part, store)


# --- fitting a visitor's part ---------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 1])
def test_fit_with_fewer_than_two_images_is_a_message(store, examples, count):
    with pytest.raises(HLGFAError, match="at least 2"):
        visitor_fit.fit_part([examples["good"]] * count, store, steps=1)


def test_fit_with_unreadable_images_is_a_message(store, tmp_path, examples):
    junk = tmp_path / "junk.png"
    junk.write_text("nope")
    with pytest.raises(HLGFAError, match="could be read"):
        visitor_fit.fit_part([str(junk), str(junk), examples["good"]], store, steps=1)


def test_fit_part_gives_a_loadable_checkpoint_zip(store, sample, tmp_path):
    paths = sorted((sample / "train" / "good").glob("*.png"))[:4]
    junk = tmp_path / "junk.png"
    junk.write_text("nope")
    thumbnail = tmp_path / "thumb.png"  # readable, but too small to learn from: skipped, named without a server path
    Image.new("RGB", (1, 1)).save(thumbnail)
    progress = []
    part = visitor_fit.fit_part([*paths, junk, thumbnail], store, steps=3,
                                report_progress=lambda f, text: progress.append(f))
    try:
        assert progress[-1] == 1.0 and progress == sorted(progress)
        assert "skipped 2 file(s) the head cannot learn from" in part.summary and "Fitted on 3 images" in part.summary
        assert "thumb.png (1x1 px, too small to learn from)" in part.summary
        with zipfile.ZipFile(part.zip_path) as archive:
            assert sorted(archive.namelist()) == ["my_part_lite/head.safetensors", "my_part_lite/model.json"]
            archive.extractall(tmp_path / "unzipped")
        reloaded = load(tmp_path / "unzipped" / "my_part_lite")
        assert reloaded.calibration == store.custom(part.run_dir).calibration
        image = uploads.read_upload(paths[0])
        assert rendering.inspect_image(reloaded, image).score == pytest.approx(
            rendering.inspect_image(store.custom(part.run_dir), image).score, rel=1e-5)
    finally:
        visitor_fit.remove_fitted(part, store)
    assert not Path(part.workdir).exists()
    with pytest.raises(HLGFAError, match="no longer on the server"):
        store.custom(part.run_dir)


# --- a fit that can be stopped, one at a time; files that go away ----------------------------------------------
def test_a_cancelled_fit_stops_between_steps_and_frees_its_slot_only_then(store, sample):
    import threading

    paths = sorted((sample / "train" / "good").glob("*.png"))[:3]
    cancel, seen, before = threading.Event(), [], set(visitor_files.process_dir().glob("fit-*"))

    def progress(fraction, text):
        seen.append(text)
        if "step 2/" in text:
            assert store.fit_slot.locked()  # still running: a second fit is refused meanwhile
            with pytest.raises(HLGFAError, match="Another fit"):
                visitor_fit.fit_part(paths, store, steps=1)
            cancel.set()

    with pytest.raises(visitor_fit.FitCancelled):
        visitor_fit.fit_part(paths, store, steps=50, report_progress=progress, cancel=cancel)
    assert not store.fit_slot.locked()
    assert not any("step 3/" in text for text in seen)  # stopped at the next step
    assert set(visitor_files.process_dir().glob("fit-*")) == before  # its folder is gone


def test_a_fit_stops_at_its_next_step_when_the_server_stops(store, sample, monkeypatch):
    import threading

    stopping = threading.Event()
    stopping.set()
    monkeypatch.setattr(visitor_fit, "SERVER_STOPPING", stopping)  # what a stop signal sets
    before = set(visitor_files.process_dir().glob("fit-*"))
    with pytest.raises(visitor_fit.FitCancelled):
        visitor_fit.fit_part(sorted((sample / "train" / "good").glob("*.png"))[:2], store, steps=50)
    assert set(visitor_files.process_dir().glob("fit-*")) == before and not store.fit_slot.locked()


def test_stale_folders_of_dead_processes_are_removed(tmp_path):
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale, alive = tmp_path / f"pid-{dead.stdout.strip()}", tmp_path / "pid-1"
    reused = tmp_path / "pid-1-99999999999"  # a live pid, but not the process that started at that time
    mine = tmp_path / visitor_files.process_dir().name
    for folder in (stale, alive, reused, mine, tmp_path / "pid-notanumber"):
        (folder / "fit-x").mkdir(parents=True)
    removed = visitor_files.remove_stale_folders(tmp_path)
    assert sorted(removed) == sorted([stale, reused] if visitor_files._process_start(1) else [stale])
    assert alive.exists() and mine.exists() and (tmp_path / "pid-notanumber").exists()
    assert visitor_files.process_dir().name.startswith(f"pid-{os.getpid()}")


def gradio_upload(root: Path, name: str, content: bytes) -> Path:
    """A file where Gradio puts an upload: ROOT/HASH/NAME."""
    import hashlib

    path = root / hashlib.sha256(content).hexdigest() / name
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_a_session_release_deletes_its_uploads_and_pictures_and_nothing_else(tmp_path):
    root = tmp_path / "cache"
    files = visitor_files.SessionFiles(root)
    mine, shared = gradio_upload(root, "mine.png", b"a"), gradio_upload(root, "shared.png", b"b")
    outside = tmp_path / "not-an-upload.png"  # a server path a request names: never claimed, never deleted
    outside.write_bytes(b"c")
    nested = root / "fit-abc" / "images" / "000.png"  # the demo's own files are not uploads either
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"d")
    files.claim("a", [str(mine), str(shared), str(outside), str(nested), None])
    files.claim("b", [str(shared)])
    picture = Path(visitor_files.write_picture(np.zeros((4, 4, 3), np.uint8), ".png", files.folder("a")))
    assert picture.is_file() and files.folder("a") == picture.parent and files.folder("b") != picture.parent
    files.release("a")
    assert not mine.exists() and not mine.parent.exists() and not picture.parent.exists()
    assert shared.is_file() and outside.is_file() and nested.is_file()  # b still holds shared
    files.release("b")
    assert not shared.exists() and outside.is_file() and nested.is_file()
    files.release("never seen")  # nothing to do, no error


def test_an_idle_session_is_released_at_the_next_claim(tmp_path):
    root = tmp_path / "cache"
    files = visitor_files.SessionFiles(root, idle_seconds=0)
    upload = gradio_upload(root, "x.png", b"x")
    files.claim("api caller", [upload])
    files.claim("someone else", [])  # any later call sweeps sessions idle for longer than idle_seconds
    assert not upload.exists()


def test_stop_signals_clean_up_then_do_what_they_did_before():
    import signal

    saved = {name: signal.getsignal(getattr(signal, name))
             for name in visitor_files.STOP_SIGNALS if hasattr(signal, name)}
    calls = []
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: calls.append("previous"))
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        handled = visitor_files.install_stop_handlers(lambda: calls.append("stop"))
        assert signal.SIGINT in handled and signal.SIGTERM in handled
        assert getattr(signal, "SIGHUP", None) not in handled  # an ignored signal stays ignored
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        assert calls == ["stop", "previous"]  # cleaned up, then chained
        with pytest.raises(SystemExit) as exited:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert exited.value.code == 0 and calls[-1] == "stop"  # the default would have killed: a clean exit
    finally:
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)


def test_upload_quota_per_session(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(600))
    quota = uploads.UploadQuota(limit=1000)
    quota.charge("a", [big])
    quota.charge("b", [big])  # sessions are counted apart
    with pytest.raises(HLGFAError, match="allowance"):
        quota.charge("a", [big])
    quota.forget("a")
    quota.charge("a", [big])


def test_result_pictures_get_unique_names():
    picture = np.zeros((8, 8, 3), dtype=np.uint8)
    first, second = visitor_files.write_picture(picture, ".jpg"), visitor_files.write_picture(picture, ".jpg")
    assert first != second and Path(first).is_file() and Path(second).is_file()


def test_draw_shares_the_upload_pixel_limit(monkeypatch):
    monkeypatch.setattr(data, "MAX_PIXELS", 100)
    with pytest.raises(HLGFAError, match="million pixels"):
        uploads.read_editor_value({"composite": np.zeros((20, 20, 3), dtype=np.uint8), "layers": []})


def test_render_gives_the_three_verdicts(store, examples):
    result = rendering.inspect_image(store.model, uploads.read_upload(examples["good"]))
    cal = store.model.calibration
    for score, state in ((cal.good_score_center, "normal"),
                         ((cal.borderline_threshold + cal.image_threshold) / 2, "borderline"),
                         (cal.image_threshold + 1, "anomalous")):
        shown = rendering.render(store.model, rendering.Inspected(result.image, result.anomaly_map, score))
        assert shown.state == state and state.capitalize() in shown.verdict


def test_copies_of_the_bundled_sample_are_nobodys(tmp_path, sample):
    """Gradio's cached copy of an example image is shown to every page: one session's end must not delete it."""
    root = tmp_path / "cache"
    example = sorted((sample / "test" / "good").glob("*.png"))[0]
    copy = gradio_upload(root, example.name, example.read_bytes())
    lookalike = gradio_upload(root, example.name, example.read_bytes()[:-1] + b"x")  # same name, other bytes
    assert demo_examples.is_copy_of_sample(copy) and not demo_examples.is_copy_of_sample(lookalike)
    files = visitor_files.SessionFiles(root)
    files.claim("a", [copy, lookalike])
    files.release("a")
    assert copy.is_file() and not lookalike.exists()
