"""The web page end to end in a real headless Chromium driven by Playwright (issue 16): the one-time link,
two dropped images (one corrupt), progress, the comparison slider, the downloaded PNG checked, a long job
cancelled, settings remembered over a reload, and requests without the cookie refused.

Set FIXATIVE_SCREENSHOTS=docs to refresh the screenshots in docs/ while it runs."""

from __future__ import annotations

import base64
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from fixative.optimise.budget import lpips_weights_present

from .conftest import DEFAULT_EPS_255

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = os.environ.get("FIXATIVE_SCREENSHOTS")

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def engine(taef2_path, tmp_path_factory):
    from fixative.hosts.server.jobs import ServerSettings
    from fixative.hosts.server.runtime import start_in_thread

    settings = ServerSettings(models=[str(taef2_path)], max_queue=32)
    running = start_in_thread(settings, token="page-test-token-" + "x" * 27)
    yield running
    running.stop()


def ticket_url(engine) -> str:
    answer = requests.post(f"{engine.url}/ui/ticket", headers={"Authorization": f"Bearer {engine.token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()["url"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-home")  # Chromium's profile, caches and crash reports: in here
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TMPDIR": str(home),
    }
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, env=env)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, engine):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside = []
    own = (engine.url, "data:", "blob:")
    page.on("request", lambda r: None if r.url.startswith(own) else outside.append(r.url))
    page.goto(ticket_url(engine))
    page.wait_for_selector("#opt-method")
    yield page
    assert not outside, f"the page fetched from elsewhere: {outside}"  # works offline: nothing from outside
    context.close()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def drop(page, files: dict[str, bytes]) -> None:
    """A real drop event on the drop zone, carrying File objects (as a file manager's drag does)."""
    payload = {name: base64.b64encode(data).decode() for name, data in files.items()}
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, b64] of Object.entries(files)) {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], name, { type: "image/png" }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def card(page, name: str):
    return page.locator("li.card", has=page.locator("h3", has_text=name))


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_the_one_time_link_becomes_a_cookie_and_works_once(browser, engine):
    url = ticket_url(engine)
    context = browser.new_context()
    page = context.new_page()
    page.goto(url)
    assert page.url == f"{engine.url}/"  # the ticket left the address bar
    page.wait_for_selector("#opt-method")
    cookie = next(c for c in context.cookies() if c["name"] == "fixative_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # the page's own script cannot read it either
    again = browser.new_context().new_page()
    again.goto(url)  # the same link a second time
    assert "used already" in again.content() and again.locator("#opt-method").count() == 0
    again.goto(f"{engine.url}/")
    assert "fixative ui" in again.content() and again.locator("#opt-method").count() == 0
    context.close()


def test_requests_without_the_cookie_are_refused(engine):
    assert requests.get(f"{engine.url}/ui/app.js").status_code == 401
    assert requests.get(f"{engine.url}/health").status_code == 401
    page = requests.get(f"{engine.url}/")
    assert page.status_code == 401 and "fixative ui" in page.text and "app.js" not in page.text
    assert requests.post(f"{engine.url}/ui/ticket").status_code == 401  # no token, no ticket


def test_a_forged_cross_site_post_with_the_cookie_is_refused(browser, engine):
    """The cookie is SameSite=Strict, and a changing request also needs the page's own header."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(ticket_url(engine))
    page.wait_for_selector("#opt-method")
    status = page.evaluate("fetch('/jobs/x/cancel', {method: 'POST'}).then(r => r.status)")
    assert status == 403
    context.close()


def test_protect_two_images_one_corrupt_compare_and_download(page, small_artwork, tmp_path):
    good = small_artwork.resize((64, 48))
    page.select_option("#opt-quality", "fast")
    page.fill("#opt-steps", "2")
    assert page.locator("#opt-style").is_visible() and not page.locator("#opt-pattern").is_visible()
    page.select_option("#opt-method", "edit")
    page.dispatch_event("#opt-steps", "change")
    assert page.locator("#opt-pattern").is_visible() and not page.locator("#opt-style").is_visible()
    drop(page, {"wave.png": png_bytes(good), "broken.png": b"\x89PNG\r\n\x1a\n not really"})
    bad = card(page, "broken.png")
    bad.locator(".error").wait_for(state="visible", timeout=60_000)
    assert "image" in bad.locator(".error").inner_text().lower()  # said in words, not a code
    done = card(page, "wave.png")
    done.locator(".result").wait_for(state="visible", timeout=120_000)
    assert done.locator(".status").inner_text() == "Protected"
    assert done.locator("progress").evaluate("p => p.value") == 1
    figures = done.locator(".figures").inner_text()
    assert "Strength" in figures and "What the model sees" in figures and "Visibility" in figures
    assert "of the strength kept" in figures  # robustness from the check
    assert "left, matched noise" in figures  # beside the null put through the same cleaner
    assert "; the model sees" in figures  # and what the model sees after each cleaner
    if not lpips_weights_present():  # the report's notes are shown: this one is always there then
        assert "LPIPS not measured" in figures
    assert not done.locator("button.cancel").is_visible() and not done.locator(".side").is_visible()
    shot(page, "web-page-result.png")

    slider = done.locator(".slider")
    slider.focus()
    page.keyboard.press("Home")  # keyboard operable
    assert done.locator(".compare").evaluate("e => e.style.getPropertyValue('--pos')") == "0%"
    done.locator(".zoom").select_option("4")
    width = done.locator(".compare img.after").evaluate("img => img.getBoundingClientRect().width")
    assert width == pytest.approx(4 * 64, abs=1)
    done.locator(".view input[value='side']").check()
    assert done.locator(".side").is_visible() and not done.locator(".viewport").is_visible()
    done.locator(".view input[value='model']").check()
    assert done.locator(".model-view").is_visible()

    with page.expect_download() as event:
        done.locator("a.download").click()
    path = tmp_path / event.value.suggested_filename
    event.value.save_as(path)
    assert path.name == "wave.protected.png"
    from fixative import metadata

    with Image.open(path) as written:
        assert written.size == good.size
        assert metadata.read(written)["method"] == "edit"
        change = np.abs(np.asarray(written.convert("RGB"), dtype=int) - np.asarray(good, dtype=int))
    assert 0 < change.max() <= DEFAULT_EPS_255

    with page.expect_download() as event:
        page.click("#download-all")
    archive = tmp_path / "all.zip"
    event.value.save_as(archive)
    with zipfile.ZipFile(archive) as opened:
        assert opened.namelist() == ["wave.protected.png"]
        assert opened.read("wave.protected.png") == path.read_bytes()


def test_the_longest_side_posted_protects_a_smaller_copy_that_lines_up(page, small_artwork, tmp_path):
    """The page's "Longest side posted" setting (option max_side): the copy at that size is protected and
    downloaded; the comparison lays it over the original at the original's size."""
    assert page.locator("label[for=opt-max_side]").inner_text() == "Longest side posted (px)"
    assert page.get_attribute("#opt-max_side", "placeholder") == "full size"
    page.select_option("#opt-quality", "fast")
    page.fill("#opt-steps", "1")
    page.fill("#opt-max_side", "64")
    page.dispatch_event("#opt-max_side", "change")
    drop(page, {"big.png": png_bytes(small_artwork.resize((96, 72)))})
    done = card(page, "big.png")
    done.locator(".result").wait_for(state="visible", timeout=120_000)
    assert "protected and written at 64x48" in done.locator(".figures").inner_text()
    done.locator(".zoom").select_option("4")
    sizes = done.locator(".compare img").evaluate_all(
        "imgs => imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().width])"
    )
    assert sizes == [[96, pytest.approx(384, abs=1)], [64, pytest.approx(384, abs=1)]]
    with page.expect_download() as event:
        done.locator("a.download").click()
    path = tmp_path / event.value.suggested_filename
    event.value.save_as(path)
    with Image.open(path) as written:
        assert written.size == (64, 48)


def test_after_the_last_step_the_page_says_what_is_measured(page, small_artwork):
    """The engine measures for seconds to minutes after the last step; the card says so, not "step 1 of 1"."""
    page.select_option("#opt-quality", "fast")
    page.fill("#opt-steps", "1")
    page.dispatch_event("#opt-steps", "change")
    drop(page, {"measured.png": png_bytes(small_artwork.resize((384, 256)))})
    statuses = "[...document.querySelectorAll('li.card .status')]"
    page.wait_for_function(
        f"() => {statuses}.some(s => s.textContent.startsWith('Measuring'))", timeout=120_000
    )
    card(page, "measured.png").locator(".result").wait_for(state="visible", timeout=120_000)


def test_cancel_a_long_job_and_settings_are_remembered(page, small_artwork):
    page.select_option("#opt-intensity", "low")
    page.fill("#opt-steps", "5000")
    page.dispatch_event("#opt-steps", "change")
    drop(page, {"long.png": png_bytes(small_artwork)})
    long = card(page, "long.png")
    page.wait_for_function(
        "() => [...document.querySelectorAll('li.card')].some(c => c.dataset.state === 'running')",
        timeout=60_000,
    )
    shot(page, "web-page-progress.png")
    long.locator("button.cancel").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('li.card')].some(c => c.dataset.state === 'cancelled')",
        timeout=15_000,
    )
    assert long.locator(".status").inner_text() == "Cancelled"
    page.reload()
    page.wait_for_selector("#opt-method")
    assert page.input_value("#opt-intensity") == "low" and page.input_value("#opt-steps") == "5000"
    saved = json.loads(page.evaluate("localStorage.getItem('fixative.settings.v1')"))
    assert saved["intensity"] == "low"


def test_usable_at_tablet_width_and_dark_theme(browser, engine):
    context = browser.new_context(viewport={"width": 768, "height": 1024}, color_scheme="dark")
    page = context.new_page()
    page.goto(ticket_url(engine))
    page.wait_for_selector("#opt-method")
    overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow  # no sideways scrolling at tablet width
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 21, 21)"  # the dark theme followed the system
    for control in page.locator("#fields select, #fields input").all():
        label = page.locator(f"label[for='{control.get_attribute('id')}']")
        assert label.count() == 1 and label.inner_text().strip()  # every control has a label
    with page.expect_file_chooser() as chooser:
        page.locator("#drop").press("Enter")  # the drop zone opens the file picker from the keyboard
    assert chooser.value.is_multiple()
    shot(page, "web-page-tablet-dark.png")
    context.close()


def test_fixative_ui_no_open_prints_a_working_one_time_link(engine, tmp_path, monkeypatch, capsys):
    """`fixative ui --no-open` reuses the running engine (found through server.json and its proof)."""
    from fixative.fixative_client import TOKEN_FILE
    from fixative.hosts.cli import main
    from fixative.hosts.server.runtime import remove_server_info, write_server_info

    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path))
    (tmp_path / TOKEN_FILE).write_text(engine.token)
    write_server_info(engine.url, os.getpid(), tmp_path)
    try:
        assert main(["ui", "--no-open"]) == 0
    finally:
        remove_server_info(os.getpid(), tmp_path)
    url = capsys.readouterr().out.strip()
    assert url.startswith(f"{engine.url}/?ticket=")
    first = requests.get(url, allow_redirects=False)
    assert first.status_code == 303 and first.headers["Location"] == "/"
    assert "HttpOnly" in first.headers["Set-Cookie"] and "SameSite=strict" in first.headers["Set-Cookie"]
    assert requests.get(url, allow_redirects=False).status_code == 401  # once only
