"""End-to-end tests in a real headless Chromium: open the demo at desktop and phone size, tap a bundled example,
read the verdict (on a phone: inside the first screen, without scrolling), reach every tab.

Uses Debian's ``chromium`` driven by Playwright for Python (never Playwright's own browser download). Skips when
either is missing, unless HLGFA_REQUIRE_BROWSER=1 (set by CI), in which case their absence is a failure.
Screenshots land in test-artifacts/ (demo*.png) for CI to keep.
"""

import os
import re
import shutil
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


VERDICT_SHOWN = "() => /Anomalous|Borderline|Normal/.test(document.querySelector('#verdict')?.innerText || '')"
PHONE = {"width": 390, "height": 844}


def open_page(browser, server, viewport):
    page = browser.new_page(viewport=viewport)
    page.goto(server, wait_until="load", timeout=60_000)  # not "networkidle": Gradio keeps a stream open
    page.locator("#inspect-examples button.thumbnail-item").first.wait_for(timeout=120_000)  # a slow first load
    return page


SCORE = r"Image score\s+([-\d.]+)"


def tap_example(page, caption: str) -> str:
    """Tap the example thumbnail with this caption; returns the verdict's text once it shows a new score (the
    verdict panel also shows the progress animation while the image is scored, so its text alone is no signal)."""
    before = re.search(SCORE, page.locator("#verdict").inner_text())
    page.locator("#inspect-examples button.thumbnail-item", has_text=caption).first.click()
    page.wait_for_function(
        "([pattern, before]) => { const t = document.querySelector('#verdict')?.innerText || ''; "
        "const m = t.match(new RegExp(pattern)); return m && m[1] !== before && /Anomalous|Borderline|Normal/.test(t); }",
        arg=[SCORE, before.group(1) if before else None], timeout=60_000)
    return page.locator("#verdict").inner_text()


def score_in(verdict: str) -> float:
    return float(re.search(SCORE, verdict).group(1))


def test_click_example_shows_overlay_and_verdict(sync_playwright, server):
    from hlgfa_lite.demo import examples as demo_examples

    captions = [caption for caption, _ in demo_examples.bundled_test_images()]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = open_page(browser, server, {"width": 1280, "height": 1000})
            thumbnails = page.locator("#inspect-examples button.thumbnail-item")
            assert thumbnails.count() == len(captions)  # every bundled test image, captioned
            assert all(caption in page.locator("#inspect-examples").inner_text() for caption in captions)
            assert "Image score —" in page.locator("#verdict").inner_text()  # no score before any image

            verdict = tap_example(page, "broken large 000")
            # Both pictures come from one event, but the browser draws them one after the other: wait for each.
            page.locator("#overlay img").first.wait_for(state="visible", timeout=60_000)
            page.locator("#mask img").first.wait_for(state="visible", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            assert "Anomalous" in verdict  # a large break, on the bundled model
            defect_score = score_in(verdict)

            good_score = score_in(tap_example(page, "good 000"))
            page.screenshot(path=str(ARTIFACTS / "demo-good.png"), full_page=True)
            assert good_score < defect_score
        finally:
            browser.close()
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000


def test_phone_tap_an_example_and_see_the_verdict_without_scrolling(sync_playwright, server):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = open_page(browser, server, PHONE)
            from hlgfa_lite.demo.examples import example_images

            for kind, _ in example_images():  # one good bottle and one of each defect, side by side in view
                example = page.locator("#inspect-examples button.thumbnail-item", has_text=kind).first
                box = example.bounding_box()
                assert box and box["y"] + box["height"] <= PHONE["height"], "the examples are below the first screen"
                assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], f"{kind}: off to the side"
            verdict = tap_example(page, "broken large 000")
            assert "Anomalous" in verdict
            page.screenshot(path=str(ARTIFACTS / "demo-phone.png"))
            assert page.evaluate("window.scrollY") == 0
            heading = page.locator("#verdict h3").first.bounding_box()  # the verdict's first line
            assert heading and 0 <= heading["y"] and heading["y"] + heading["height"] <= PHONE["height"]
        finally:
            browser.close()


def test_phone_reaches_every_tab(sync_playwright, server):
    """All four tabs are buttons on the first screen (none folded into a "•••" menu), and each one opens."""
    shows = {"Inspect": "#input-image", "Fit": "#fit-button", "Draw": "#editor", "Inside": "#inside-gallery"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = open_page(browser, server, PHONE)
            tabs = page.get_by_role("tab")
            assert sorted(tabs.all_inner_texts()) == sorted(shows)
            for name, element in [*list(shows.items())[1:], ("Inspect", shows["Inspect"])]:
                tab = page.get_by_role("tab", name=name, exact=True)
                box = tab.bounding_box()
                assert tab.is_visible() and box and box["x"] + box["width"] <= PHONE["width"]
                tab.click()
                page.locator(element).first.wait_for(state="visible", timeout=30_000)
            page.get_by_role("tab", name="Draw", exact=True).click()
            page.screenshot(path=str(ARTIFACTS / "demo-phone-draw.png"))
        finally:
            browser.close()


def test_closing_the_page_removes_its_fitted_part(sync_playwright, server, sample, monkeypatch):
    """A visitor fits a head in the page, then closes it: the fit's folder (checkpoint, zip, uploads' copies) is
    removed when the session ends, not an hour later when Gradio drops the session's state."""
    import time

    from hlgfa_lite.demo import visitor_files, visitor_fit

    monkeypatch.setattr(visitor_fit, "FIT_STEPS", 2)  # the server runs in this process and reads it at call time
    before = set(visitor_files.process_dir().glob("fit-*"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = open_page(browser, server, {"width": 1280, "height": 900})
            page.get_by_role("tab", name="Fit", exact=True).click()
            images = sorted((sample / "train" / "good").glob("*.png"))[:3]
            page.locator("#fit-files input[type=file]").set_input_files([str(p) for p in images])
            page.locator("#fit-button").click()
            page.wait_for_function("() => /Fitted on/.test(document.querySelector('#fit-summary')?.innerText || '')",
                                   timeout=300_000)
            fitted = set(visitor_files.process_dir().glob("fit-*")) - before
            assert len(fitted) == 1 and all(folder.is_dir() for folder in fitted)
            page.close()
        finally:
            browser.close()
    deadline = time.monotonic() + 120  # Gradio notices the closed connection at its next heartbeat
    while any(folder.exists() for folder in fitted) and time.monotonic() < deadline:
        time.sleep(1)
    assert not any(folder.exists() for folder in fitted), "the closed session's fitted part is still on disk"
