"""Build the lesson notebooks from their reviewable sources: ``notebooks/src/NN_name.py`` -> ``notebooks/NN_name.ipynb``.

A source is a plain Python file in jupytext's "percent" format::

    # %% [markdown]
    # # A title
    # Some prose with $\\LaTeX$.

    # %% [setup]                       <- replaced by the shared setup cell (notebooks/src/_setup.py)

    # %%
    print("a code cell")

The first markdown cell gets the "Open in Colab" badge. Building writes notebooks *without outputs*: run
``scripts/run_notebooks.py`` afterwards to execute them (full mode) and store the outputs that get committed.
``--check`` only reports notebooks whose cells differ from their source (outputs are ignored), for tests and CI.

    python scripts/build_notebooks.py            # (re)build every notebook whose source changed
    python scripts/build_notebooks.py --check    # exit 1 if a notebook is out of date
    python scripts/build_notebooks.py --keep-outputs   # a small source edit: keep each cell's last outputs
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

import jupytext
import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = NOTEBOOKS / "src"
PYPROJECT = NOTEBOOKS.parent / "pyproject.toml"


def repository(pyproject: Path = PYPROJECT) -> tuple[str, str]:
    """("OWNER/NAME", ref) from the one place that holds them: pyproject.toml's [project.urls] Repository and
    [tool.hlgfa-lite] ref (set both with scripts/set_repository.py)."""
    config = tomllib.loads(pyproject.read_text())
    url = config["project"]["urls"]["Repository"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)/?", url)
    if not match:
        raise SystemExit(f"{pyproject}: [project.urls] Repository must be https://github.com/OWNER/NAME, not {url}")
    return match.group(1), config["tool"]["hlgfa-lite"]["ref"]


GITHUB_REPO, BRANCH = repository()


def colab_url(name: str) -> str:
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{BRANCH}/notebooks/{name}"


def colab_badge(name: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name)})"


def parse(text: str) -> list[tuple[str, str]]:
    """Source text -> [(kind, body)], kind in {"markdown", "code", "setup"}: jupytext reads the percent format; a
    ``# %% [setup]`` marker reaches us as the title of an empty code cell. Empty cells are dropped."""
    parsed = []
    for cell in jupytext.reads(text, fmt="py:percent").cells:
        kind = "setup" if cell.metadata.get("title") == "[setup]" else cell.cell_type
        if kind not in ("markdown", "code", "setup"):
            raise SystemExit(f"a lesson holds a {kind} cell; use markdown or code cells")
        if cell.source.strip() or kind == "setup":
            parsed.append((kind, cell.source.strip("\n")))
    return parsed


def setup_source(name: str) -> str:
    text = (SOURCES / "_setup.py").read_text()
    return text.replace("{NOTEBOOK}", name).replace("__REPOSITORY__", GITHUB_REPO).replace("__REF__", BRANCH).strip("\n")


def build_cells(source: Path) -> list:
    name = source.with_suffix(".ipynb").name
    cells, badge_done = [], False
    for kind, body in parse(source.read_text()):
        if kind == "markdown":
            if not badge_done:
                body = colab_badge(name) + "\n\n" + body
                badge_done = True
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif kind == "setup":
            cells.append(nbformat.v4.new_code_cell(setup_source(name)))
        elif kind == "code":
            cells.append(nbformat.v4.new_code_cell(body))
        else:
            raise SystemExit(f"{source}: unknown cell kind [{kind}]")
    if not badge_done:
        raise SystemExit(f"{source}: a lesson must start with a markdown cell (it carries the Colab badge)")
    for index, cell in enumerate(cells):  # stable ids keep rebuilds free of noise in the diff
        cell["id"] = f"{source.stem[:2]}-{index:03d}"
    return cells


def new_notebook(cells: list):
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata.update({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "colab": {"provenance": []},
    })
    return notebook


def same_cells(old, new_cells: list) -> bool:
    mine = [(c.cell_type, c.source) for c in old.cells]
    return mine == [(c.cell_type, c.source) for c in new_cells]


def carry_outputs(old, cells: list) -> None:
    """Give each new code cell the outputs its namesake (same id) had in ``old``: for a small edit (a path, a
    setup line) that does not change what the cell shows, so the committed full-run outputs are not lost.
    After a real change, re-run the lessons (scripts/run_notebooks.py) instead."""
    previous = {c.get("id"): c for c in old.cells if c.cell_type == "code"}
    for cell in cells:
        before = previous.get(cell.get("id"))
        if cell.cell_type == "code" and before is not None:
            cell["outputs"], cell["execution_count"] = before.get("outputs", []), before.get("execution_count")


def lesson_sources() -> list[Path]:
    return sorted(p for p in SOURCES.glob("[0-9][0-9]_*.py"))


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    global NOTEBOOKS, SOURCES
    if root is not None:  # another checkout (scripts/set_repository.py's tests work on a copy)
        NOTEBOOKS, SOURCES = root / "notebooks", root / "notebooks" / "src"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="report stale notebooks, write nothing")
    parser.add_argument("--force", action="store_true", help="rewrite even unchanged notebooks (drops outputs)")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep each code cell's previous outputs (for edits that do not change them)")
    args = parser.parse_args(argv)
    stale = []
    for source in lesson_sources():
        target = NOTEBOOKS / source.with_suffix(".ipynb").name
        cells = build_cells(source)
        if target.exists() and not args.force and same_cells(nbformat.read(target, as_version=4), cells):
            continue
        stale.append(target.name)
        if not args.check:
            if args.keep_outputs and target.exists():
                carry_outputs(nbformat.read(target, as_version=4), cells)
                notebook = nbformat.read(target, as_version=4)
                notebook.cells = cells
                nbformat.write(notebook, target)
                print(f"rebuilt {target.relative_to(NOTEBOOKS.parent)}, keeping the previous outputs")
                continue
            nbformat.write(new_notebook(cells), target)
            print(f"built {target.relative_to(NOTEBOOKS.parent)} (no outputs: run scripts/run_notebooks.py)")
    if args.check and stale:
        print("out of date (run python scripts/build_notebooks.py, then scripts/run_notebooks.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
