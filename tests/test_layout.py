"""The package's shape: the method's modules at the top, the machinery in sub-packages, imports flowing one way.

Every import inside ``hlgfa_lite`` (module level or inside a function) is read from the source: no module imports
the package's ``__init__`` (which imports nearly everything), no two modules import each other through any chain,
and the method's own modules import no machinery but the feature cache that training reads."""

from __future__ import annotations

import ast
from pathlib import Path

import hlgfa_lite

PACKAGE = Path(hlgfa_lite.__file__).parent
MACHINERY = ("tools", "lessons", "demo", "assets")
ALLOWED_FROM_METHOD = {"hlgfa_lite.tools.cache"}  # how training holds its features: plumbing the fit cannot do without


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, source: str | None = None) -> set[str]:
    """Modules of hlgfa_lite that ``path`` (or ``source`` read as if it were there) imports, resolved to module
    names (``from .x import y`` -> x, or x.y when y is a module)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("hlgfa_lite"):
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                          or (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").exists() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hlgfa_lite")}
    return found


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py") if "space" not in p.parts}


def test_no_module_imports_the_package_root():
    offenders = {m: "hlgfa_lite" for m, deps in GRAPH.items() if "hlgfa_lite" in deps and m != "hlgfa_lite"}
    assert not offenders, f"import from the module that defines it instead: {offenders}"


def test_the_import_graph_has_no_circle():
    graph = {m: {d for d in deps if d in GRAPH and d != "hlgfa_lite"} for m, deps in GRAPH.items() if m != "hlgfa_lite"}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, f"import circle: {' -> '.join(path[path.index(dep):] + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_method_imports_no_machinery():
    method = {m for m in GRAPH if m.count(".") == 1 and m.split(".")[1] not in MACHINERY + ("__main__",)}
    assert {"hlgfa_lite.priors", "hlgfa_lite.alignment", "hlgfa_lite.model", "hlgfa_lite.training"} <= method
    for module in method:
        machinery = {d for d in GRAPH[module] if d.split(".")[1:2] and d.split(".")[1] in MACHINERY}
        assert machinery <= ALLOWED_FROM_METHOD, f"{module} imports {machinery - ALLOWED_FROM_METHOD}"


def test_the_reader_resolves_relative_imports():
    """The reader itself: ``from .x``, ``from ..x`` and ``from .. import x`` land on the right modules."""
    deps = imports_of(PACKAGE / "tools" / "cli.py")
    assert "hlgfa_lite.tools.checkpoint" in deps and "hlgfa_lite.config" in deps
    source = "from .. import config\nfrom . import files\nfrom .. import HLGFA\nfrom ..model import HLGFA\n"
    assert imports_of(PACKAGE / "tools" / "probe.py", source) == {
        "hlgfa_lite.config", "hlgfa_lite.tools.files", "hlgfa_lite", "hlgfa_lite.model"}
