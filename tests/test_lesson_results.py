"""The benchmark results a lesson quotes come from the clone's files, else from the repository online."""

import io
import json
import urllib.error

from hlgfa_lite.lessons import results


def test_in_a_clone_the_file_on_disk_is_read_and_nothing_is_fetched(tmp_path, monkeypatch):
    (tmp_path / "benchmarks" / "results" / "probes").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "probes" / "x.json").write_text('{"rows": [1, 2]}')
    monkeypatch.setattr(results.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert results.results_json("probes/x", tmp_path, "owner/name", "main") == {"rows": [1, 2]}
    assert results.results_json("missing", tmp_path, "owner/name", "main") == {}


def test_without_a_clone_the_file_comes_from_the_repository_at_the_ref_once(monkeypatch):
    asked = []

    def urlopen(url, timeout):
        asked.append(url)
        if "levels_tire" in url:
            return io.BytesIO(json.dumps({"rows": [3]}).encode())
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(results.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(results, "_FETCHED", {})
    for _ in range(2):  # the second read of each file asks nothing: the kernel keeps what it got, or that it failed
        assert results.results_json("levels_tire", None, "owner/name", "v1") == {"rows": [3]}
        assert results.results_json("absent", None, "owner/name", "v1") == {}
    assert asked == ["https://raw.githubusercontent.com/owner/name/v1/benchmarks/results/levels_tire.json",
                     "https://raw.githubusercontent.com/owner/name/v1/benchmarks/results/absent.json"]


def test_a_page_that_is_not_json_counts_as_no_result(monkeypatch):
    monkeypatch.setattr(results.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"<html>proxy</html>"))
    monkeypatch.setattr(results, "_FETCHED", {})
    assert results.results_json("levels_tire", None, "owner/name", "main") == {}


def test_a_name_that_leaves_the_results_folder_is_refused(tmp_path):
    import pytest

    from hlgfa_lite import HLGFAError

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "secret.json").write_text("{}")
    for name in ("../../secret", "/etc/passwd", "", None, "a/../../secret"):
        with pytest.raises(HLGFAError, match="inside benchmarks/results"):
            results.results_json(name, tmp_path, "owner/name", "main")


def test_a_repository_name_no_url_can_hold_counts_as_unreachable(monkeypatch):
    monkeypatch.setattr(results, "_FETCHED", {})
    assert results.results_json("levels_tire", None, "my org/my repo", "main") == {}
    assert results.results_bytes("x.png", None, "owner/name", "ma\nin") is None
