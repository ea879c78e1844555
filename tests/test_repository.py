"""One address for the repository: pyproject.toml holds it, every badge, link and setup cell agrees with it, and
scripts/set_repository.py changes all of them at once."""

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


def _script(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "scripts"))  # as when the script runs: its siblings importable
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setter(monkeypatch):
    module = _script("set_repository", monkeypatch)
    build = module.build_notebooks
    for name in ("NOTEBOOKS", "SOURCES", "GITHUB_REPO", "BRANCH"):  # the script rebinds them; restore after
        monkeypatch.setattr(build, name, getattr(build, name))
    return module


def test_every_badge_link_and_setup_cell_agrees_with_pyproject(setter):
    assert setter.disagreements(REPO) == []


def test_setup_cell_installs_from_the_configured_address(setter):
    repo, ref = setter.build_notebooks.repository()
    setup = next(c for c in nbformat.read(REPO / "notebooks" / "00_quickstart.ipynb", as_version=4).cells
                 if c.cell_type == "code").source
    assert f'REPOSITORY, REF = "{repo}", "{ref}"' in setup
    assert 'git+https://github.com/{REPOSITORY}@{REF}' in setup and 'glob("hlgfa_lite-*.whl")' in setup


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A copy of everything set_repository.py touches."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("figures"))
    return tmp_path


def test_set_repository_rewrites_every_place(setter, checkout):
    old_repo, _ = setter.build_notebooks.repository(checkout / "pyproject.toml")
    assert setter.main(["someone/hlgfa-fork", "--ref", "v9.9.9", "--root", str(checkout)]) == 0
    assert setter.build_notebooks.repository(checkout / "pyproject.toml") == ("someone/hlgfa-fork", "v9.9.9")
    assert setter.disagreements(checkout) == []
    for name, text in setter.texts(checkout).items():
        assert old_repo not in text, name
    notebook = nbformat.read(checkout / "notebooks" / "03_alignment.ipynb", as_version=4)
    assert "colab.research.google.com/github/someone/hlgfa-fork/blob/v9.9.9/notebooks/03_alignment.ipynb" in \
        notebook.cells[0].source
    assert notebook.cells[-1].get("outputs") == nbformat.read(
        REPO / "notebooks" / "03_alignment.ipynb", as_version=4).cells[-1].get("outputs")  # outputs kept


def test_a_stray_address_is_reported(setter, checkout):
    readme = checkout / "README.md"
    readme.write_text(readme.read_text() + "\nSee https://github.com/somebody/else for the code.\n")
    problems = setter.disagreements(checkout)
    assert len(problems) == 1 and "somebody/else" in problems[0]
    assert setter.main(["--check", "--root", str(checkout)]) == 1
