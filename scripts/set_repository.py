"""Set the repository's address and ref everywhere from one command; check that nothing disagrees with it.

The one place is ``pyproject.toml``: ``[project.urls] Repository = "https://github.com/OWNER/NAME"`` and
``[tool.hlgfa-lite] ref = "TAG"``. Everything else that names the repository is derived from it: the Colab badges
(README.md, notebooks/README.md, each notebook's first cell) and the notebooks' setup cell, which installs
``hlgfa-lite @ git+https://github.com/OWNER/NAME@TAG`` on Colab.

    python scripts/set_repository.py OWNER/NAME --ref v0.1.0   # rewrite pyproject, READMEs, notebooks
    python scripts/set_repository.py --check                    # exit 1 and list every disagreement

Notebooks are rebuilt keeping their outputs (only the badge and the setup cell's address change).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

import build_notebooks  # beside this script: its folder is first on the path when the script runs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "notebooks/README.md"]  # Markdown files whose links name the repository
NAME = r"[\w.-]+/[\w.-]+"
COLAB = re.compile(rf"https://colab\.research\.google\.com/github/(?P<repo>{NAME})/blob/(?P<ref>[^/\s)]+)/")
GITHUB = re.compile(rf"(?<![\w.])github\.com/(?P<repo>{NAME}?)(?=[/@\s)\"'`]|$)")
SETUP = re.compile(r'REPOSITORY, REF = "(?P<repo>[^"]*)", "(?P<ref>[^"]*)"')


def texts(root: Path) -> dict[str, str]:
    """Every text that may name the repository: the docs, and each notebook's markdown and code."""
    found = {doc: (root / doc).read_text() for doc in DOCS if (root / doc).is_file()}
    for path in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        found[f"notebooks/{path.name}"] = "\n".join(cell.source for cell in notebook.cells)
    return found


def disagreements(root: Path = ROOT) -> list[str]:
    """One line per place that names another repository or ref than pyproject.toml does."""
    repo, ref = build_notebooks.repository(root / "pyproject.toml")
    problems = []
    for name, text in texts(root).items():
        for match in COLAB.finditer(text):
            if (match["repo"], match["ref"]) != (repo, ref):
                problems.append(f"{name}: Colab link to {match['repo']}@{match['ref']}, not {repo}@{ref}")
        for match in GITHUB.finditer(text):
            if match["repo"] != repo:
                problems.append(f"{name}: link to github.com/{match['repo']}, not {repo}")
        for match in SETUP.finditer(text):
            if (match["repo"], match["ref"]) != (repo, ref):
                problems.append(f"{name}: setup cell installs {match['repo']}@{match['ref']}, not {repo}@{ref}")
        if name.endswith(".ipynb") and not SETUP.search(text):
            problems.append(f"{name}: no setup cell naming the repository")
    return problems


def set_repository(repo: str, ref: str, root: Path = ROOT) -> None:
    if not re.fullmatch(NAME, repo):
        raise SystemExit(f"{repo!r} is not OWNER/NAME (e.g. my-org/hlgfa_lite).")
    if not re.fullmatch(r"[\w.+/-]+", ref):
        raise SystemExit(f"{ref!r} is not a git tag or branch name.")
    old_repo, old_ref = build_notebooks.repository(root / "pyproject.toml")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    text = re.sub(r'(?m)^Repository = "[^"]*"', f'Repository = "https://github.com/{repo}"', text, count=1)
    text = re.sub(r'(?m)^(\[tool\.hlgfa-lite\]\n(?:.*\n)*?)ref = "[^"]*"', rf'\g<1>ref = "{ref}"', text, count=1)
    pyproject.write_text(text)
    for doc in DOCS:
        path = root / doc
        if path.is_file():
            text = COLAB.sub(f"https://colab.research.google.com/github/{repo}/blob/{ref}/", path.read_text())
            path.write_text(text.replace(f"github.com/{old_repo}", f"github.com/{repo}"))
    build_notebooks.GITHUB_REPO, build_notebooks.BRANCH = build_notebooks.repository(pyproject)
    build_notebooks.main(["--keep-outputs"], root=root)
    print(f"repository {old_repo}@{old_ref} -> {repo}@{ref}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", nargs="?", help="OWNER/NAME on GitHub")
    parser.add_argument("--ref", default=None, help="git tag or branch (default: keep the current one)")
    parser.add_argument("--check", action="store_true", help="only list disagreements (exit 1 if any)")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)  # tests work on a copy
    args = parser.parse_args(argv)
    if not args.check:
        if not args.repo:
            parser.error("give OWNER/NAME, or --check")
        set_repository(args.repo, args.ref or build_notebooks.repository(args.root / "pyproject.toml")[1], args.root)
    problems = disagreements(args.root)
    for problem in problems:
        print(problem)
    if not problems:
        print("every badge, link and setup cell agrees with pyproject.toml")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
