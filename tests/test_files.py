"""The one writing path (hlgfa_lite.tools.files) and the checkpoint saves that go through it: a full disk, a read-only
location, a library's own I/O error or a link in the way is one HLGFAError line that says what to do, the previous
files stay as they were, and no temporary file or hidden folder is left behind."""

import errno
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import hlgfa_lite.tools.checkpoint as checkpoint
from hlgfa_lite import HLGFA, HLGFAError, load, preset, save
from hlgfa_lite.tools import files
from hlgfa_lite.calibration import calibrate

# what safetensors raised when its file filled a real 50 MB tmpfs
SAFETENSORS_FULL_DISK = "Error while serializing: I/O error: No space left on device (os error 28)"


def tiny_model(seed: int = 0) -> HLGFA:
    torch.manual_seed(seed)  # the random backbone's weights; the head starts from the config's seed
    model = HLGFA(preset("lite", seed=seed, hr_size=64, lr_size=32), pretrained=False).eval()
    model.calibration = calibrate(torch.tensor([1.0, 1.1, 1.2]), torch.linspace(0, 1, 16).reshape(1, 4, 4))
    return model


def raise_errno(number: int):
    def fail(*args, **kwargs):
        raise OSError(number, os.strerror(number))

    return fail


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


# --- single files ---------------------------------------------------------------------------------------------
def test_write_text_replaces_the_file_and_keeps_its_mode(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old")
    target.chmod(0o600)
    files.write_text(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600
    assert os.listdir(tmp_path) == ["scores.csv"]


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": 1}')
    monkeypatch.setattr(files.os, "fsync", raise_errno(errno.ENOSPC))
    with pytest.raises(HLGFAError) as caught:
        files.write_json(target, {"new": 2})
    message = one_line(caught)
    assert "No space left" in message and "free space" in message and "unchanged" in message
    assert target.read_text() == '{"old": 1}' and os.listdir(tmp_path) == ["metrics.json"]


def test_a_full_disk_on_a_new_file_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "fsync", raise_errno(errno.ENOSPC))
    with pytest.raises(HLGFAError) as caught:
        files.write_text(tmp_path / "new.txt", "text")
    assert "nothing was written" in one_line(caught) and "unchanged" not in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_a_read_only_location_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "open", raise_errno(errno.EROFS), raising=False)
    with pytest.raises(HLGFAError) as caught:
        files.write_text(tmp_path / "x.json", "{}")
    assert "read-only" in one_line(caught) and os.listdir(tmp_path) == []


def test_a_linked_file_is_written_where_the_link_points(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    files.write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_broken_link_or_a_folder_is_refused_before_writing(tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "missing" / "x.json")
    with pytest.raises(HLGFAError, match="does not exist"):
        files.write_text(tmp_path / "dangling", "x")
    with pytest.raises(HLGFAError, match="is a folder"):
        files.write_text(tmp_path, "x")
    assert sorted(os.listdir(tmp_path)) == ["dangling"] and not (tmp_path / "missing").exists()


def test_a_pipe_is_written_into_not_replaced(tmp_path):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    files.write_json(pipe, {"a": 1})
    reader.join(timeout=30)
    assert received == ['{\n  "a": 1\n}\n'] and stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


# --- folders --------------------------------------------------------------------------------------------------
def make_folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "a.txt").write_text(text)
    return path


def test_a_library_error_while_building_leaves_the_old_folder_and_no_staging(tmp_path):
    target = make_folder(tmp_path / "run", "old")

    def build(folder: Path) -> None:
        (folder / "a.txt").write_text("half")
        raise SafetensorError(SAFETENSORS_FULL_DISK)

    with pytest.raises(HLGFAError) as caught:
        files.replace_folder(target, build, what="checkpoint")
    message = one_line(caught)
    assert "No space left" in message and "previous checkpoint" in message and "unchanged" in message
    assert snapshot(target) == {"a.txt": b"old"} and hidden(tmp_path) == []


def test_a_failed_copy_of_many_files_is_one_short_line(tmp_path, monkeypatch):
    source = tmp_path / "source"
    source.mkdir()
    for i in range(300):
        (source / f"file-{i:03d}.bin").write_bytes(b"x" * 10)
    target = make_folder(tmp_path / "out", "old")
    monkeypatch.setattr(shutil, "_fastcopy_sendfile", raise_errno(errno.ENOSPC))
    with pytest.raises(HLGFAError) as caught:
        files.replace_folder(target, lambda folder: shutil.copytree(source, folder / "copy"))
    assert "disk is full" in one_line(caught)
    assert snapshot(target) == {"a.txt": b"old"} and hidden(tmp_path) == []


def test_without_an_exchange_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = make_folder(tmp_path / "run", "old")
    monkeypatch.setattr(files, "exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".run.new-"):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real_rename(src, dst)

    monkeypatch.setattr(files.os, "rename", rename)
    with pytest.raises(HLGFAError) as caught:
        files.replace_folder(target, lambda folder: (folder / "a.txt").write_text("new"))
    assert "unchanged" in one_line(caught) and "permission" in str(caught.value)
    assert snapshot(target) == {"a.txt": b"old"} and hidden(tmp_path) == []
    monkeypatch.setattr(files.os, "rename", real_rename)
    files.replace_folder(target, lambda folder: (folder / "a.txt").write_text("new"))
    assert snapshot(target) == {"a.txt": b"new"} and hidden(tmp_path) == []


@pytest.mark.parametrize("can_exchange", [True, False])
def test_a_file_still_being_written_is_carried_over_whole(tmp_path, monkeypatch, can_exchange):
    """`hlgfa-lite fit --out run --overwrite | tee run/fit.log`: the log is open while the checkpoint is swapped in.
    Lines written after the swap must land in the log in the live folder, not in the old folder's, removed next."""
    if not can_exchange:
        monkeypatch.setattr(files, "exchange", lambda a, b: False)
    target = make_folder(tmp_path / "run", "old")
    (target / "figures").mkdir()
    (target / "figures" / "map.png").write_bytes(b"png")
    with open(target / "fit.log", "a") as log:
        log.write("before the save\n")
        log.flush()
        files.replace_folder(target, lambda folder: (folder / "a.txt").write_text("new"))
        log.write("after the save\n")
    assert snapshot(target) == {"a.txt": b"new", "figures/map.png": b"png",
                                "fit.log": b"before the save\nafter the save\n"}
    assert hidden(tmp_path) == []


def test_replace_entries_touches_only_the_named_entries(tmp_path):
    target = make_folder(tmp_path / "space", "user's")
    (target / ".git").mkdir()
    (target / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (target / "lib").mkdir()
    (target / "lib" / "stale.py").write_text("old")

    def build(folder: Path) -> None:
        (folder / "app.py").write_text("app")
        (folder / "lib").mkdir()
        (folder / "lib" / "new.py").write_text("new")

    files.replace_entries(target, build, ["app.py", "lib"])
    assert snapshot(target) == {".git/HEAD": b"ref: refs/heads/main", "a.txt": b"user's", "app.py": b"app",
                                "lib/new.py": b"new"}
    assert hidden(tmp_path) == []


# --- checkpoints ----------------------------------------------------------------------------------------------
def heads_equal(a: HLGFA, b: HLGFA) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.head.state_dict().values(), b.head.state_dict().values()))


def test_a_full_disk_in_safetensors_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    run = save(tiny_model(seed=0), tmp_path / "run")
    (run / "metrics.json").write_text("{}")
    before = snapshot(run)

    def full_disk(tensors, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 16)  # a part written, as a real full disk leaves it
        raise SafetensorError(SAFETENSORS_FULL_DISK)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(HLGFAError) as caught:
        save(tiny_model(seed=1), run, overwrite=True)
    message = one_line(caught)
    assert "No space left" in message and "previous checkpoint" in message and "unchanged" in message
    assert "disk is full" in message
    assert snapshot(run) == before and hidden(tmp_path) == []
    assert heads_equal(load(run, pretrained=False), tiny_model(seed=0))


def test_a_full_disk_on_a_first_save_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "save_file", lambda *a, **k: (_ for _ in ()).throw(
        SafetensorError(SAFETENSORS_FULL_DISK)))
    with pytest.raises(HLGFAError) as caught:
        save(tiny_model(), tmp_path / "run")
    assert "nothing was written" in one_line(caught) and os.listdir(tmp_path) == []


def test_overwrite_through_a_linked_out_replaces_the_checkpoint_it_points_at(tmp_path):
    real = save(tiny_model(seed=0), tmp_path / "real")
    (real / "metrics.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert save(tiny_model(seed=1), link, overwrite=True) == link
    assert link.is_symlink() and (real / "metrics.json").read_text() == "{}"
    assert heads_equal(load(link, pretrained=False), tiny_model(seed=1))
    assert sorted(os.listdir(tmp_path)) == ["link", "real"]


def test_a_linked_out_pointing_nowhere_is_refused_before_writing(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(HLGFAError, match="does not exist"):
        save(tiny_model(), tmp_path / "link")
    assert sorted(os.listdir(tmp_path)) == ["link"]


def test_only_files_py_replaces_files():
    """Every writer of the package goes through files.py: no other module renames over a path."""
    package = Path(files.__file__).parent
    others = [p.relative_to(package) for p in package.rglob("*.py") if p.name != "files.py"
              and any(call in p.read_text() for call in ("os.replace(", "os.rename(", "renameat2"))]
    assert others == []
