"""End to end in real headless Chromium: rate a small dataset through the page with clicks and
keys, then check the database and ``sice screen --results``.

Needs Debian ``chromium`` (/usr/bin/chromium, or $SICE_CHROMIUM) and the ``playwright`` Python
package; Playwright's own browser download is not used. Leaves a screenshot in ``artifacts/``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.helpers import (REPO, SCREENING_GENERATORS, XSS_SCENE, make_screening_dataset, require_tools,
                             screening_server)

from sice.screening.store import VoteStore

CHROMIUM = os.environ.get("SICE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = REPO / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        # skips here, fails in CI (.ci/run installs chromium and sets SICE_REQUIRE_EXTERNAL)
        require_tools(CHROMIUM, what="the screening page test (apt-get install chromium, or set SICE_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shown_ids(page) -> list[str]:
    """Candidate ids in display order (A, B, ...), read from the image URLs."""
    return [src.rsplit("/", 1)[1] for src in
            page.eval_on_selector_all("#viewer figure img", "els => els.map(e => e.getAttribute('src'))")]


def wait_saved(page, text):
    page.wait_for_function("t => document.getElementById('status').textContent.includes(t)", arg=text)


def test_rate_a_dataset_in_chromium(browser, tmp_path):
    ds = make_screening_dataset(tmp_path / "ds", size=(120, 160))
    store = VoteStore(ds / "screening.sqlite")

    def name(scene, cid):
        return next(g for g in SCREENING_GENERATORS if store.opaque_id(scene, g) == cid)

    errors = []
    with screening_server(ds) as (proc, url):
        # bypass_csp: Playwright's waits evaluate strings, which our CSP forbids; it also makes the
        # <script>-name check below test the escaping itself, without the CSP's second line.
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        page.fill("#rater-input", "  Ann  ")
        page.click("#start")
        page.wait_for_selector("#viewer figure img")
        assert page.inner_text("#progress") == "Scene 1 of 3 · 0 rated"
        assert page.inner_text("#rater-name") == "Ann"

        # Scene 1: keys. Grid -> "3" makes C current; side by side shows C left and one other;
        # Space flips; Tab changes the partner; back to C and Enter votes.
        ids1 = shown_ids(page)
        assert len(ids1) == 4 and page.locator("#viewer figure:visible").count() == 4
        page.keyboard.press("3")
        assert page.inner_text("#current-label") == "C"
        page.keyboard.press("s")
        assert page.locator("#viewer figure:visible").count() == 2
        page.keyboard.press("Tab")
        page.keyboard.press("Space")
        assert page.inner_text("#current-label") != "C"
        page.keyboard.press("Space")
        page.keyboard.press("f")
        assert page.locator("#viewer figure:visible").count() == 1
        # 1:1 zoom follows the pointer and shows the image at its own size
        page.locator("#viewer figure:visible img").hover(position={"x": 100, "y": 100})
        bg = page.eval_on_selector(".zoombox.current", "e => [e.style.backgroundImage, e.style.backgroundSize]")
        assert ids1[2] in bg[0] and bg[1] == "160px 120px"
        page.keyboard.press("z")
        assert "frozen" in page.inner_text("#zoom-hint")
        page.keyboard.press("Enter")
        wait_saved(page, "Saved: C for scene 1")
        page.wait_for_function("document.getElementById('progress').textContent.startsWith('Scene 2 of 3')")

        # Scene 2: mouse. Click candidate B, then the Choose button; source frame overlay.
        ids2 = shown_ids(page)
        page.keyboard.press("g")
        page.click("#frames figure >> nth=1")
        assert page.is_visible("#overlay") and "2.JPG" in page.inner_text("#overlay-caption")
        page.keyboard.press("Escape")
        assert not page.is_visible("#overlay")
        page.click("#viewer figure >> nth=1")
        page.click("#vote-button")
        wait_saved(page, "Saved: B for scene 2")

        # Scene 3 is called <img src=x onerror=...>: shown as text, never run; vote none acceptable.
        page.wait_for_function("document.getElementById('progress').textContent.startsWith('Scene 3 of 3')")
        assert page.inner_text("#scene-title") == "Scene " + XSS_SCENE
        page.keyboard.press("0")
        wait_saved(page, "All 3 scenes rated")
        assert page.evaluate("window.__xss") is None
        assert page.locator("#scene-title img").count() == 0

        # Change the vote on scene 1 (D instead of C) from the keyboard.
        page.keyboard.press("p")
        page.keyboard.press("p")
        page.wait_for_function("document.getElementById('progress').textContent.startsWith('Scene 1 of 3')")
        assert page.locator("#viewer figure.voted .label").inner_text() == "C"
        assert shown_ids(page) == ids1  # the same order as before for the same rater
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        wait_saved(page, "Saved: D for scene 1")

        # Help dialog lists the shortcuts
        page.keyboard.press("?")
        assert page.is_visible("#help") and "vote for the current candidate" in page.inner_text("#help")
        page.keyboard.press("Escape")

        # A second rater at the same time, in another browser profile
        other = browser.new_context(viewport={"width": 1000, "height": 800}, bypass_csp=True).new_page()
        other.goto(url + "/")
        other.fill("#rater-input", "Ben")
        other.keyboard.press("Enter")
        other.wait_for_selector("#viewer figure img")
        ben_ids = shown_ids(other)
        other.keyboard.press("1")
        other.keyboard.press("Enter")
        wait_saved(other, "Saved: A for scene 1")

        # Resume: reloading keeps the rater (localStorage) and lands on Ben's first unrated scene.
        other.reload()
        other.wait_for_function("document.getElementById('progress').textContent.startsWith('Scene 2 of 3 · 1 rated')")

        page.goto(url + "/")
        page.wait_for_function("document.getElementById('progress').textContent.includes('3 rated')")
        page.wait_for_function("[...document.querySelectorAll('#viewer img')].every(i => i.complete && i.naturalWidth)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "screening.png"), full_page=True)
        context.close()
    assert errors == []

    assert store.latest_votes() == {("Ann", "1"): name("1", ids1[3]), ("Ann", "2"): name("2", ids2[1]),
                                    ("Ann", XSS_SCENE): None, ("Ben", "1"): name("1", ben_ids[0])}
    assert len(store.history()) == 5

    out = subprocess.run([sys.executable, "-m", "sice", "screen", str(ds), "--results", "--format", "json",
                          "-o", str(tmp_path / "r.json")], capture_output=True, text=True, check=True)
    assert "2 raters, 5 votes cast" in out.stdout
    res = json.loads(Path(tmp_path / "r.json").read_text())
    by_scene = {r["scene"]: r for r in res["scenes"]}
    expected_1 = sorted({name("1", ids1[3]), name("1", ben_ids[0])})
    assert by_scene["1"]["winners"] == expected_1 and by_scene["1"]["raters"] == 2
    assert by_scene["2"]["winners"] == [name("2", ids2[1])]
    assert by_scene[XSS_SCENE]["winners"] == [] and by_scene[XSS_SCENE]["none_acceptable"] == 1
