"""End-to-end test in a real headless Chromium: open the demo, click a bundled example, read the verdict.

Uses Debian's ``chromium`` driven by Playwright for Python (never Playwright's own browser download). Skips when
either is missing, unless HLGFA_REQUIRE_BROWSER=1 (set by CI), in which case their absence is a failure.
The screenshot lands in test-artifacts/demo.png for CI to keep.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import free_port_on_loopback

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("HLGFA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
REQUIRED = os.environ.get("HLGFA_REQUIRE_BROWSER") == "1"


def browser_or_skip():
    """Playwright's sync API, or a skip (a failure when the browser test is required)."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
        sync_playwright = None
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install -y chromium)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if REQUIRED:
            pytest.fail(message + " (HLGFA_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def sync_playwright():
    return browser_or_skip()  # before the server starts: a skip costs nothing


@pytest.fixture(scope="module")
def demo_app(sync_playwright):
    pytest.importorskip("gradio")
    from hlgfa_lite.demo import app

    return app


@pytest.fixture(scope="module")
def server(demo_app):
    demo = demo_app.launch_demo(server_name="127.0.0.1", server_port=free_port_on_loopback(), torch_threads=None,
                                prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


VERDICT_SHOWN = "() => /Anomalous|Normal/.test(document.querySelector('#verdict')?.innerText || '')"


def test_click_example_shows_overlay_and_verdict(sync_playwright, server):
    from hlgfa_lite.demo import logic

    labels = [label for label, _ in logic.example_images()]  # the order of the example thumbnails
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(server, wait_until="load", timeout=60_000)  # not "networkidle": Gradio keeps a stream open
            thumbnails = page.locator("#inspect-examples button.gallery-item")
            thumbnails.first.wait_for(timeout=60_000)
            assert thumbnails.count() == len(labels)

            thumbnails.nth(labels.index("broken large")).click()
            page.locator("#overlay img").first.wait_for(state="visible", timeout=60_000)
            page.wait_for_function(VERDICT_SHOWN, timeout=60_000)
            verdict = page.locator("#verdict").inner_text()
            defect_score = float(page.locator("#score input").input_value())
            assert page.locator("#mask img").first.is_visible()
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            assert "Anomalous" in verdict  # a large break, on the bundled model
            assert f"{defect_score:.2f}" in verdict

            thumbnails.nth(labels.index("good")).click()
            page.wait_for_function(
                f"() => {{ const v = document.querySelector('#score input')?.value; "
                f"return v && Math.abs(parseFloat(v) - {defect_score}) > 1e-3; }}", timeout=60_000)
            page.wait_for_function(VERDICT_SHOWN, timeout=60_000)
            good_score = float(page.locator("#score input").input_value())
            page.screenshot(path=str(ARTIFACTS / "demo-good.png"), full_page=True)
            assert good_score < defect_score
        finally:
            browser.close()
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000
