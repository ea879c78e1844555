"""Loading images, masks and folders: every format the issue names, and one clear error per bad input."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from hlgfa_lite import HLGFAError
from hlgfa_lite.tools.cli import main
from hlgfa_lite.data import load_image, load_mask, load_test_split, train_image_paths


def write(path, array, mode=None, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, **save)
    return path


def make_mvtec(root, names=("000",), defect_names=("000",)):
    rgb = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    for n in ("a", "b", "c"):
        write(root / "train" / "good" / f"{n}.png", rgb)
    for n in names:
        write(root / "test" / "good" / f"{n}.png", rgb)
    for n in defect_names:
        write(root / "test" / "crack" / f"{n}.png", rgb)
        write(root / "ground_truth" / "crack" / f"{n}_mask.png", np.zeros((40, 40), dtype=np.uint8))
    return root


def test_every_image_mode_becomes_rgb_in_unit_range(tmp_path):
    gray = np.arange(0, 200, dtype=np.uint8).reshape(10, 20)
    cases = {
        "gray.png": write(tmp_path / "gray.png", gray),
        "rgba.png": write(tmp_path / "rgba.png", np.dstack([np.stack([gray] * 3, -1), np.full((10, 20), 128, np.uint8)])),
        "deep.png": write(tmp_path / "deep.png", (gray.astype(np.uint16) * 257)),  # 16-bit
        "photo.jpg": write(tmp_path / "photo.jpg", np.stack([gray] * 3, -1), quality=95),
        "tiles.tiff": write(tmp_path / "tiles.tiff", np.stack([gray] * 3, -1)),
        "old.bmp": write(tmp_path / "old.bmp", np.stack([gray] * 3, -1)),
    }
    for name, path in cases.items():
        image = load_image(path)
        assert image.shape == (3, 10, 20) and image.dtype == torch.float32, name
        assert 0 <= image.min() and image.max() <= 1, name
        # the same gray ramp, whatever the encoding
        assert abs(image[0, 0, 5].item() - 5 / 255) < 0.02 and abs(image[1, 9, 19].item() - 199 / 255) < 0.02, name
    Image.open(cases["gray.png"]).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").shape == (3, 10, 20)


def test_exif_rotation_is_honoured(tmp_path):
    image = Image.fromarray(np.zeros((10, 30, 3), dtype=np.uint8))  # 30 wide, 10 high
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "phone.jpg", exif=exif)
    assert load_image(tmp_path / "phone.jpg").shape == (3, 30, 10)



def test_one_pixel_limit_refuses_before_decoding(tmp_path, monkeypatch):
    """``data.MAX_PIXELS`` is the one limit (the library, the CLI and the demo decode through ``data.decode``)."""
    from hlgfa_lite import data

    from PIL import ImageFile

    path = write(tmp_path / "wide.png", np.zeros((100, 100, 3), dtype=np.uint8))
    monkeypatch.setattr(data, "MAX_PIXELS", 5000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: pytest.fail("decoded past the limit"))
    with pytest.raises(data.TooManyPixels, match="100 x 100 pixels, over the limit of 0 million"):
        load_image(path)


def test_mask_any_nonzero_is_defect_and_is_resized_to_the_image(tmp_path):
    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[0:10, 0:10] = 1  # value 1, not 255: still a defect
    path = write(tmp_path / "m.png", mask)
    loaded = load_mask(path, (40, 40))
    assert loaded.shape == (40, 40) and loaded.dtype == torch.bool
    assert loaded[:20, :20].all() and not loaded[20:, :].any()


def test_masks_pair_by_name_not_by_sort_order(tmp_path):
    names = ["x-1", "x-2", "x-10"]
    root = make_mvtec(tmp_path / "cat", defect_names=names)
    for i, name in enumerate(names):  # each mask marks a different row: its own number
        mask = np.zeros((40, 40), dtype=np.uint8)
        mask[int(name[2:]), :] = 255
        write(root / "ground_truth" / "crack" / f"{name}_mask.png", mask)
    samples = [s for s in load_test_split(root) if s.label]
    assert [s.path.stem for s in samples] == ["x-1", "x-2", "x-10"]  # natural order
    for s in samples:
        assert s.mask_path.name == f"{s.path.stem}_mask.png"
        assert load_mask(s.mask_path, (40, 40))[int(s.path.stem[2:])].all()


def test_plain_folder_of_good_images_is_enough_to_fit(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    for n in ("a.png", "b.JPG"):
        write(tmp_path / n, rgb)
    assert [p.name for p in train_image_paths(tmp_path)] == ["a.png", "b.JPG"]


@pytest.mark.parametrize("breakage, expected", [
    ("wrong_layout", "no train/good folder"),
    ("empty_train", "fit needs at least 2"),
    ("missing_mask", "has no mask"),
    ("unreadable", "cannot read image"),
    ("no_defects", "no defective images"),
    ("no_test", "has no test/ folder"),
])
def test_bad_input_gives_one_clear_line_exit_2_and_writes_nothing(tmp_path, capsys, breakage, expected):
    root = make_mvtec(tmp_path / "cat")
    if breakage == "wrong_layout":
        shutil.rmtree(root / "train" / "good")
    elif breakage == "empty_train":
        shutil.rmtree(root / "train" / "good")
        (root / "train" / "good").mkdir()
    elif breakage == "missing_mask":
        (root / "ground_truth" / "crack" / "000_mask.png").unlink()
    elif breakage == "unreadable":
        (root / "test" / "crack" / "000.png").write_bytes(b"not a png at all")
        (root / "train" / "good" / "b.png").write_bytes(b"\x89PNG truncated")
    elif breakage == "no_defects":
        shutil.rmtree(root / "test" / "crack")
    elif breakage == "no_test":
        shutil.rmtree(root / "test")
    out = tmp_path / "run"
    command = (["fit", str(root), "--out", str(out), "--steps", "1", "--quiet"]
               if breakage in {"wrong_layout", "empty_train", "unreadable"} else
               ["evaluate", str(out), str(root), "--quiet"])
    assert main(command) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err
    assert not out.exists()


def test_loader_errors_are_library_errors(tmp_path):
    with pytest.raises(HLGFAError, match="not a folder"):
        train_image_paths(tmp_path / "missing")


def test_a_transform_that_squares_the_image_keeps_its_mask_paired(tmp_path):
    """The robustness benchmark resizes each test image to a square before its nuisance: the mask still belongs to
    the image as stored (not refused for its aspect), and a map that marks the dark marks ranks the mask first."""
    from hlgfa_lite.backbone import resize
    from hlgfa_lite.data import LabelledImage
    from hlgfa_lite.evaluation import evaluate_samples

    pixels, marks = np.full((40, 80, 3), 128, np.uint8), np.zeros((40, 80), np.uint8)
    pixels[:, :20], marks[:, :20] = 0, 255  # a dark left quarter, and its mask
    Image.fromarray(pixels).save(tmp_path / "001.png")
    Image.fromarray(marks).save(tmp_path / "001_mask.png")
    Image.fromarray(np.full((40, 80, 3), 128, np.uint8)).save(tmp_path / "002.png")

    def score(batch):  # the transform made it square
        assert batch.shape[-2:] == (64, 64)
        return 1 - batch[:, 0], torch.tensor([0.0])

    samples = [LabelledImage(tmp_path / "001.png", "crack", tmp_path / "001_mask.png"),
               LabelledImage(tmp_path / "002.png", "good", None)]
    result = evaluate_samples(score, samples, 32, warmup=0, progress=False, transform=lambda x: resize(x[None], 64)[0])
    assert result.metrics["pixel_auroc"] > 0.95


def test_hidden_files_and_folders_are_not_images(tmp_path):
    """macOS's "._000.png" beside a copied "000.png", ".ipynb_checkpoints/" and dot files are a system's, not parts:
    a folder lists, and predict walks, only the images a person put there (WebP included)."""
    from PIL import Image
    from hlgfa_lite.data import list_images
    from hlgfa_lite.tools.cli import images_to_predict

    for name in ("000.png", "001.webp", "._000.png", ".hidden.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name, format="WEBP" if name.endswith("webp") else "PNG")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / ".ipynb_checkpoints" / "002.png")
    assert [p.name for p in list_images(tmp_path)] == ["000.png", "001.webp"]
    assert [str(name) for _, name in images_to_predict([tmp_path])] == ["000.png", "001.webp"]


def test_predict_names_a_folders_files_that_are_not_images_in_one_note(tmp_path, capsys):
    from PIL import Image
    from hlgfa_lite.tools.cli import images_to_predict

    Image.new("RGB", (8, 8)).save(tmp_path / "000.png")
    (tmp_path / "notes.txt").write_text("a line")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "001.cr2").write_bytes(b"\0")
    (tmp_path / ".DS_Store").write_bytes(b"\0")  # hidden: a system's file, not worth a note
    assert [str(name) for _, name in images_to_predict([tmp_path])] == ["000.png"]
    note = capsys.readouterr().out.strip()
    assert note.count("\n") == 0 and "2 file(s)" in note and "notes.txt" in note and "raw/001.cr2" in note
    assert ".DS_Store" not in note
    Image.new("RGB", (8, 8)).save(tmp_path / "002.png")
    images_to_predict([tmp_path / "000.png"])  # a file given by name: no folder, no note
    assert capsys.readouterr().out == ""


def test_a_multi_page_tiff_reads_its_first_page_and_leaves_no_file_open(tmp_path):
    import gc
    import warnings
    from PIL import Image
    from hlgfa_lite.data import decode, load_image

    path = tmp_path / "pages.tif"
    Image.new("RGB", (20, 10), "red").save(path, save_all=True, append_images=[Image.new("RGB", (20, 10), "blue")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert decode(path).multi_frame
        image = load_image(path)
        gc.collect()
    assert image[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]


def test_a_jpeg_mask_is_named_in_a_warning_as_its_artefacts_count_as_defect(tmp_path):
    """Every non-zero mask value is a defect, so a JPEG's faint ringing around the defect widens it. The mask still
    loads; a warning says why the pixel metrics may fall."""
    import warnings

    drawn = Image.new("L", (64, 64))
    drawn.paste(255, (20, 20, 40, 40))
    drawn.save(tmp_path / "m.jpg", quality=90)
    drawn.save(tmp_path / "m.png")
    with pytest.warns(UserWarning, match="are JPEGs"):
        lossy = load_mask(tmp_path / "m.jpg", (64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = load_mask(tmp_path / "m.png", (64, 64))
    assert exact.sum() == 400 and lossy.sum() > exact.sum()


def test_a_linked_folder_is_walked_and_a_loop_of_links_is_not(tmp_path):
    """A data set linked into a folder (``ln -s /data/bottle good``) is what a person means to predict; a link back up
    the tree must not list anything twice, or never end."""
    from PIL import Image
    from hlgfa_lite.tools.cli import images_to_predict

    real = tmp_path / "elsewhere"
    real.mkdir()
    for name in ("000.png", "001.png"):
        Image.new("RGB", (8, 8)).save(real / name)
    given = tmp_path / "given"
    given.mkdir()
    (given / "good").symlink_to(real, target_is_directory=True)
    (real / "up").symlink_to(given, target_is_directory=True)  # a loop: elsewhere/up -> given/good -> elsewhere
    assert [str(name) for _, name in images_to_predict([given])] == ["good/000.png", "good/001.png"]


def test_fit_on_a_test_split_points_to_the_good_images_never_to_a_defect_folder(tmp_path):
    """`hlgfa-lite fit bottle/test`: its first subfolder with images is broken_large; fit must not advise it."""
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    for folder in ("test/broken_large", "test/good", "test/contamination"):
        for name in ("000.png", "001.png", "002.png"):
            write(tmp_path / "cat" / folder / name, rgb)
    with pytest.raises(HLGFAError, match=r"test looks like a test split \(subfolders broken_large, contamination, good\)"
                       r", and fit trains on defect-free images only: give .*test/good\.$"):
        train_image_paths(tmp_path / "cat" / "test")
    for name in ("000.png", "001.png", "002.png"):
        write(tmp_path / "cat" / "train" / "good" / name, rgb)
    with pytest.raises(HLGFAError, match=r"defect-free images only: give .*cat\.$"):  # the category, train/good in it
        train_image_paths(tmp_path / "cat" / "test")


def test_fit_on_a_folder_whose_images_are_in_a_subfolder_names_that_subfolder(tmp_path):
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    for name in ("000.png", "001.png", "002.png"):
        write(tmp_path / "parts" / "good" / name, rgb)
    with pytest.raises(HLGFAError, match=r"0 image\(s\) of its own, but its subfolder .*good holds 3"):
        train_image_paths(tmp_path / "parts")
    assert len(train_image_paths(tmp_path / "parts" / "good")) == 3
    for name in ("000.png", "001.png"):  # images of its own too: those are read, and the subfolder is named
        write(tmp_path / "parts" / name, rgb)
    with pytest.warns(UserWarning, match=r"reads the 2 images in .*parts itself, not those in its subfolders \(good\)"):
        assert [p.name for p in train_image_paths(tmp_path / "parts")] == ["000.png", "001.png"]


@pytest.mark.parametrize("top", [200, 4000, 2_000_000_000])
def test_32_bit_integer_images_are_scaled_by_the_depth_their_values_need(tmp_path, top):
    """Mode "I" holds 32-bit integers whatever the camera's depth: 8-bit values are divided by 255, 16-bit ones by
    65535 and larger ones by 2^31 - 1, so a 32-bit image is not clipped to white."""
    ramp = np.linspace(0, top, 40 * 40).reshape(40, 40).astype(np.int32)
    path = tmp_path / "deep.tif"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode == "I"
    depth = 255 if top <= 255 else 65535 if top <= 65535 else 2 ** 31 - 1
    np.testing.assert_allclose(load_image(path)[0].numpy(), ramp / depth, rtol=1e-6)


def test_fit_uses_each_image_once_and_says_so(tmp_path):
    """`paths * 4` or a file listed twice: a copy held out would calibrate the threshold on an image the head trained
    on. Each image is used once, where it was first given, with one warning."""
    from hlgfa_lite.data import good_image_paths

    a, b, c = (write(tmp_path / f"{n}.png", np.zeros((40, 40, 3), dtype=np.uint8)) for n in "abc")
    with pytest.warns(UserWarning, match="3 of the 6 paths given to fit name an image given before"):
        assert good_image_paths([a, b, tmp_path / "." / "a.png", c, b, a]) == [a, b, c]
    for wrong in (None, b"/tmp", 3):
        with pytest.raises(HLGFAError, match="fit takes a folder or a list of image files"):
            good_image_paths(wrong)


def test_fit_names_good_images_that_are_copies_of_another(tmp_path):
    from hlgfa_lite.tools.cache import load_images

    rng = np.random.default_rng(0)
    first, other = (rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(2))
    paths = [write(tmp_path / "a.png", first), write(tmp_path / "b.png", other), write(tmp_path / "c.png", first)]
    with pytest.warns(UserWarning, match=r"1 of 3 good images are copies of another \(c.png = a.png\)"):
        load_images(paths, 64)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_images(paths[:2], 64)  # no copies: no warning


def test_a_mask_whose_image_is_gone_is_named_in_one_warning(tmp_path):
    import warnings

    root = make_mvtec(tmp_path / "cat", defect_names=("000", "001"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every mask matched: no warning
        assert len(load_test_split(root)) == 3
    (root / "test" / "crack" / "001.png").unlink()  # a defect image removed, its mask left behind
    write(root / "ground_truth" / "scratch" / "007_mask.png", np.zeros((40, 40), dtype=np.uint8))  # no test folder
    with pytest.warns(UserWarning, match=r"2 masks .* match no test image \(crack/001_mask.png, "
                                         r"scratch/007_mask.png\)"):
        samples = load_test_split(root)
    assert [s.path.name for s in samples if s.label] == ["000.png"]


def test_a_refused_image_file_is_closed_at_once(tmp_path):
    """A truncated file: PIL opened it and the refusal left it open until the collector ran (a ResourceWarning, and
    on Windows a file that cannot be deleted meanwhile)."""
    import gc
    import warnings

    path = tmp_path / "t.png"
    Image.new("RGB", (50, 50)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(HLGFAError, match="damaged or truncated"):
            load_image(path)
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
