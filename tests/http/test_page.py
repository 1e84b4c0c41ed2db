"""The chart page in a real browser (headless Chromium): it lists the streams, plots one at a
coarse level, and refetches a finer level within the point budget as the user zooms.

The server is the real app (create_app) on a loopback port; the page is opened the way a user
would with a token, as ``/?token=...``, and then works through its cookie.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from datastream import Datastream
from datastream.http.app import create_app
from datastream.http.server import ServerThread
from tests.http.browser import chromium

TOKEN = "page-test-token"
START = np.datetime64("2026-01-01T00:00:00", "s")
SECONDS = 2 * 86_400
BUDGET = 2_000
# Finest first, as the page names them ("raw" is the stream's own points).
LEVELS = ["raw", "10seconds", "minutes", "10minutes", "hours", "6hours", "days"]
SERIES_RGB = (31, 111, 235)  # app.js SERIES_COLOUR
WAIT_SECONDS = 15.0
# DATASTREAM_PAGE_SCREENSHOT=docs/images/http-page.png keeps the whole-range view there.
SCREENSHOT_COPY = os.environ.get("DATASTREAM_PAGE_SCREENSHOT")

COUNT_SERIES_PIXELS = """
const canvas = document.querySelector("#chart canvas");
const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
const [r, g, b] = arguments[0];
let line = 0, band = 0;
for (let i = 0; i < pixels.length; i += 4) {
  const near = Math.abs(pixels[i] - r) < 40 && Math.abs(pixels[i + 1] - g) < 40
    && Math.abs(pixels[i + 2] - b) < 40;
  if (near && pixels[i + 3] > 200) line += 1;
  else if (near && pixels[i + 3] > 20 && pixels[i + 3] < 90) band += 1;
}
return {line, band};
"""


def build_store() -> tuple[Datastream, dict[str, str]]:
    """Two days of 1 Hz temperature (with a two-hour hole), per-minute humidity, and a stream
    that the error test deletes; downsampled like a store that has been running."""
    ds = Datastream()
    seconds = np.arange(SECONDS)
    timestamps = START + seconds.astype("timedelta64[s]")
    temperature = 20 + 5 * np.sin(seconds * 2 * np.pi / 86_400)
    temperature += np.random.default_rng(14).normal(0, 0.4, SECONDS)
    temperature[30_000:37_200] = np.nan
    ids = {
        "temperature": ds.ensure_stream(
            {"sensor": "t1"}, {"quantity": "temperature", "site": {"room": "lab"}},
            ["mean", "min", "max", "count"],
        ),
        "humidity": ds.ensure_stream(
            {"sensor": "h1"}, {"quantity": "humidity"}, ["mean", "min", "max", "count"]
        ),
        "doomed": ds.ensure_stream({"sensor": "x9"}, {"quantity": "doomed"}, ["mean"]),
    }
    ds.append_arrays(ids["temperature"], timestamps, temperature)
    ds.append_arrays(ids["humidity"], timestamps[::60], 50 + 10 * np.cos(seconds[::60] / 7_000))
    ds.append_arrays(ids["doomed"], timestamps[:10], np.ones(10))
    ds.downsample_streams(until=datetime.datetime(2026, 1, 3, 1, tzinfo=datetime.timezone.utc))
    return ds, ids


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Datastream, dict[str, str]]]:
    ds, ids = build_store()
    try:
        with ServerThread(create_app(ds, token=TOKEN)) as base_url:
            yield base_url, ds, ids
    finally:
        ds.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def chart_state(driver: Any) -> dict[str, Any]:
    return driver.execute_script("return window.datastreamChart")


def wait_for(driver: Any, condition: Callable[[dict[str, Any]], bool], what: str) -> dict:
    """Polls the page's state until ``condition`` holds; fails with the state and console."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        state = chart_state(driver)
        if state is not None and condition(state):
            return state
        time.sleep(0.05)
    console = [entry["message"] for entry in driver.get_log("browser")]
    pytest.fail(f"timed out waiting for {what}: state {chart_state(driver)}, console {console}")


def settled_after(loads: int) -> Callable[[dict[str, Any]], bool]:
    return lambda state: state["loads"] > loads and not state["loading"]


def open_page(driver: Any, base_url: str, streams: int) -> None:
    driver.get(f"{base_url}/?token={TOKEN}")
    deadline = time.monotonic() + WAIT_SECONDS
    while len(driver.find_elements(By.CSS_SELECTOR, "#stream-list button")) < streams:
        assert time.monotonic() < deadline, driver.find_element(By.TAG_NAME, "body").text
        time.sleep(0.05)


def stream_button(driver: Any, stream_id: str) -> Any:
    selector = f'#stream-list button[data-stream-id="{stream_id}"]'
    return driver.find_element(By.CSS_SELECTOR, selector)


def drag_across_plot(driver: Any, left: float, right: float) -> None:
    """A mouse drag over the plot from ``left`` to ``right`` (fractions of its width)."""
    overlay = driver.find_element(By.CSS_SELECTOR, "#chart .u-over")
    width = overlay.size["width"]
    start_offset = round(width * left) - width // 2  # offsets count from the element's centre
    (ActionChains(driver).move_to_element_with_offset(overlay, start_offset, 0)
     .click_and_hold().move_by_offset(round(width * (right - left)), 0).release().perform())


def series_pixels(driver: Any) -> dict[str, int]:
    return driver.execute_script(COUNT_SERIES_PIXELS, list(SERIES_RGB))


def test_page_lists_every_stream_and_filters_them(served, browser) -> None:
    base_url, _, ids = served
    open_page(browser, base_url, streams=len(ids))
    assert "token" not in browser.current_url  # the cookie carries it from here on
    assert browser.find_element(By.ID, "stream-count").text == "3 streams"
    labels = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#stream-list button")]
    assert any("site.room=lab" in label and ids["temperature"] in label for label in labels)

    browser.find_element(By.ID, "filter").send_keys("humid")
    shown = browser.find_elements(By.CSS_SELECTOR, "#stream-list button")
    assert [button.get_attribute("data-stream-id") for button in shown] == [ids["humidity"]]
    assert browser.find_element(By.ID, "stream-count").text == "1 of 3 streams"


def test_zooming_refetches_finer_levels_within_the_budget(served, browser, tmp_path) -> None:
    base_url, _, ids = served
    open_page(browser, base_url, streams=len(ids))
    stream_button(browser, ids["temperature"]).click()

    whole = wait_for(browser, settled_after(0), "the whole-range chart")
    assert whole["streamId"] == ids["temperature"]
    # 2 days in at most 2,000 points: 10-minute buckets (1-minute ones would be 2,880).
    assert whole["granularity"] == "10minutes"
    assert 250 <= whole["pointsDrawn"] <= BUDGET
    assert whole["xRange"][1] - whole["xRange"][0] == pytest.approx(SECONDS - 1, abs=1)
    assert "granularity 10minutes" in browser.find_element(By.ID, "chart-info").text
    drawn = series_pixels(browser)
    assert drawn["line"] > 500 and drawn["band"] > 5_000, drawn
    browser.save_screenshot(str(tmp_path / "whole.png"))

    drag_across_plot(browser, 0.40, 0.45)  # about 2.4 hours
    zoomed = wait_for(browser, settled_after(whole["loads"]), "the zoomed chart")
    span = zoomed["xRange"][1] - zoomed["xRange"][0]
    assert 0.02 * SECONDS < span < 0.08 * SECONDS
    assert LEVELS.index(zoomed["granularity"]) < LEVELS.index(whole["granularity"])
    assert zoomed["granularity"] == "10seconds"
    assert 0 < zoomed["pointsDrawn"] <= BUDGET
    assert series_pixels(browser)["line"] > 500
    browser.save_screenshot(str(tmp_path / "zoomed.png"))

    drag_across_plot(browser, 0.40, 0.42)  # a few minutes: the raw points themselves
    raw = wait_for(browser, settled_after(zoomed["loads"]), "the raw chart")
    raw_span = raw["xRange"][1] - raw["xRange"][0]
    assert raw["granularity"] == "raw"
    assert abs(raw["pointsDrawn"] - raw_span) <= 2  # one point a second
    assert series_pixels(browser)["line"] > 200

    overlay = browser.find_element(By.CSS_SELECTOR, "#chart .u-over")
    ActionChains(browser).double_click(overlay).perform()
    reset = wait_for(browser, settled_after(raw["loads"]), "the reset chart")
    assert reset["granularity"] == "10minutes" and reset["xRange"] == whole["xRange"]

    problems = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not problems, problems
    for name in ("whole.png", "zoomed.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if SCREENSHOT_COPY:
        shutil.copyfile(tmp_path / "whole.png", Path(SCREENSHOT_COPY))


def test_a_server_error_is_shown_with_its_message(served, browser) -> None:
    base_url, ds, ids = served
    open_page(browser, base_url, streams=len(ids))
    ds.delete_streams({"stream_id": ids["doomed"]})  # listed, but gone when the page asks
    before = chart_state(browser)["loads"]
    stream_button(browser, ids["doomed"]).click()
    failed = wait_for(browser, settled_after(before), "the failed load")
    assert failed["error"].startswith("HTTP 404: ")
    error_box = browser.find_element(By.ID, "error")
    assert error_box.is_displayed() and error_box.text == failed["error"]
