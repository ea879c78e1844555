"""The release artefacts, tried the way users meet them, in ONE fresh venv that the two checks share:

1. the Space folder (``hlgfa-lite space``): a fresh venv gets only its ``requirements.txt``, ``python app.py`` runs
   from the folder alone with the variables a Space sets, and ``/inspect`` gives the right verdicts;
2. the sdist and wheel (``python -m build``): the wheel is installed into that venv and, from an empty folder (no
   clone on ``sys.path``), ``hlgfa-lite quickstart`` and ``hlgfa-lite demo`` work.

The Space test runs first, while the venv holds only the Space's requirements (see ``venv`` for where pip finds them:
by default already installed here, never a download).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hlgfa_lite.tools import cli

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "hlgfa_lite" / "assets" / "samples" / "bottle" / "test"
PACKAGED = ["hlgfa_lite/assets/checkpoints/bottle_lite/head.safetensors", "hlgfa_lite/demo/space/app.py",
            "hlgfa_lite/assets/samples/bottle/test/good/000.png", "hlgfa_lite/demo/app.py"]
gradio_client = pytest.importorskip("gradio_client")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=3)
        return True
    except OSError:
        return False


def installed_closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The distributions installed here that ``pip install -r requirements`` resolves to: every requirement and,
    recursively, what it requires (markers and extras evaluated), as this environment's pip resolved them."""
    todo, seen, found = [Requirement(line) for line in requirements], set(), {}
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        distribution = metadata.distribution(requirement.name)  # PackageNotFoundError: the dev venv lacks it
        assert requirement.specifier.contains(distribution.version, prereleases=True), (requirement, distribution.version)
        found[key[0]] = distribution
        for line in distribution.requires or []:
            needed = Requirement(line)
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in ("", *requirement.extras)):
                todo.append(needed)
    return list(found.values())


def link_installed(requirements: list[str], layer: Path) -> int:
    """Link the installed files of ``requirements``' closure (and nothing else: not this clone's hlgfa_lite) into
    ``layer``, a folder a fresh venv then reads through a .pth file; returns how many distributions."""
    layer.mkdir()
    closure = installed_closure(requirements)
    tops = {Path(d.locate_file("")) / Path(f).parts[0] for d in closure for f in d.files or []
            if Path(f).parts and Path(f).parts[0] != ".."}  # top-level packages, modules and .dist-info folders
    assert not any(t.name.startswith("hlgfa_lite") for t in tops)
    for top in tops:
        (layer / top.name).symlink_to(top)
    return len(closure)


def clean_env(**extra) -> dict:
    """The environment of a user's shell: nothing that points into this clone, one torch thread."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    return dict(env, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", **extra)


def run(command: list[str], cwd: Path, timeout: int = 1200, **env) -> str:
    done = subprocess.run(command, cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def serve(command: list[str], cwd: Path, port: int, log: Path, **env) -> subprocess.Popen:
    """Start a server and wait until its page answers (or fail with the end of its log)."""
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=cwd, env=clean_env(**env), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{command} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3).read().decode()
            assert "gradio" in page.lower()
            return server
        except OSError:
            time.sleep(1)
    server.kill()
    pytest.fail(f"{command} did not answer within 300 s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("release")
    yield folder
    shutil.rmtree(folder / "venv", ignore_errors=True)  # up to gigabytes; pytest keeps its last temporary folders


@pytest.fixture(scope="module")
def space(work) -> Path:
    out = work / "space"
    assert cli.main(["space", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def venv(work, space) -> Path:
    """A fresh venv into which pip installs the Space's ``requirements.txt`` and nothing else.

    By default pip finds each requirement already there: a .pth file shows the venv the installed files of exactly
    the requirements' closure, linked from the environment running this test (``link_installed``): downloading and
    unpacking torch and Gradio again takes 5-10 minutes and gigabytes, and says nothing about this project. pip still
    checks every requirement's version range against them; a package the Space needs but its requirements do not
    name is missing there, as on the Hub. ``HLGFA_RELEASE_INSTALL=index`` makes pip install everything from the
    package index instead (the CPU-wheel index line dropped where it cannot be reached)."""
    requirements = space.joinpath("requirements.txt").read_text().splitlines()
    index = next((line.split()[-1] for line in requirements if line.startswith("--extra-index-url")), None)
    if index and not reachable(index):
        requirements = [line for line in requirements if not line.startswith("--extra-index-url")]
    chosen = work / "space-requirements.txt"
    chosen.write_text("\n".join(requirements) + "\n")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    if os.environ.get("HLGFA_RELEASE_INSTALL") != "index":
        names = [line for line in requirements if line.strip() and not line.startswith(("#", "-"))]
        link_installed(names, work / "layer")
        [site] = list(venv.glob("lib/python*/site-packages"))
        (site / "_release_test_layer.pth").write_text(f"{work / 'layer'}\n")
    # --no-compile: byte-compiling every file of torch and Gradio is a third of a real install; imports compile
    # what they use
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", "-r", str(chosen)], cwd=work,
        timeout=2400)
    return venv


def test_space_folder_serves_right_verdicts_from_its_own_files(space, venv, work):
    python = str(venv / "bin" / "python")
    assert run([python, "-c", "import importlib.util as u; print(u.find_spec('hlgfa_lite') is None)"],
               cwd=work).strip() == "True", "the Space venv must not hold the library: the folder brings it"
    port = free_port()
    server = serve([python, "app.py"], cwd=space, port=port, log=work / "space.log",
                   GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port))
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        verdicts = {}
        for name in ("good/000.png", "broken_large/000.png"):
            result = client.predict(gradio_client.handle_file(str(SAMPLE / name)), "bottle (bundled model)", 1.0,
                                    api_name="/inspect")
            verdicts[name] = result[3]
    finally:
        stop(server)
    assert "Normal" in verdicts["good/000.png"] and "Anomalous" not in verdicts["good/000.png"], verdicts
    assert "Anomalous" in verdicts["broken_large/000.png"], verdicts


@pytest.fixture(scope="module")
def dist(work) -> Path:
    out = work / "dist"
    shutil.rmtree(out, ignore_errors=True)
    # sdist first, then the wheel built from the sdist: a file missing from the sdist fails here
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)], cwd=work)
    return out


def test_sdist_and_wheel_carry_the_package_data(dist):
    [wheel], [sdist] = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert all(path in names for path in PACKAGED), sorted(set(PACKAGED) - names)
    with tarfile.open(sdist) as archive:
        members = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert all(path in members for path in PACKAGED), sorted(set(PACKAGED) - members)


def test_installed_wheel_runs_quickstart_and_demo_without_a_clone(dist, venv, work):
    [wheel] = list(dist.glob("*.whl"))
    python, tool = str(venv / "bin" / "python"), str(venv / "bin" / "hlgfa-lite")
    run([python, "-m", "pip", "install", "-q", "--no-compile", f"{wheel}[demo]"], cwd=work)
    empty = work / "empty"
    empty.mkdir()
    where = run([python, "-c", "import hlgfa_lite; print(hlgfa_lite.__file__)"], cwd=empty).strip()
    assert where.startswith(str(venv)) and not where.startswith(str(REPO)), where
    said = run([tool, "quickstart", "--steps", "3", "--quiet", "--out", "runs/quickstart"], cwd=empty,
               HF_HUB_OFFLINE="1")
    assert "checkpoint:" in said
    for made in ("model.json", "head.safetensors", "metrics.json", "overlays.png"):
        assert (empty / "runs" / "quickstart" / made).is_file(), made
    port = free_port()
    server = serve([tool, "demo", "--port", str(port), "--device", "cpu"], cwd=empty, port=port,
                   log=work / "demo.log")
    try:  # the served page answers, and so does the bundled model behind it
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        verdict = client.predict(gradio_client.handle_file(str(SAMPLE / "broken_large" / "000.png")),
                                 "bottle (bundled model)", 1.0, api_name="/inspect")[3]
    finally:
        stop(server)
    assert "Anomalous" in verdict, verdict
