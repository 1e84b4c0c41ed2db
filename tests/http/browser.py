"""Headless Chromium for the chart page tests, driven by Selenium through chromedriver.

Both come from the Debian packages ``chromium`` and ``chromium-driver`` (``make chromium``
installs them): never a browser downloaded at test time. A missing binary fails the test
with that hint; it is not a reason to skip.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = os.environ.get("DATASTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DATASTREAM_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW_SIZE = (1280, 800)
# Quiet and self-contained: no sandbox (tests run as root), no GPU, no calls home.
ARGUMENTS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--force-device-scale-factor=1",
)


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is not installed."""


@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator:
    """A headless Chromium WebDriver with a fresh profile in ``profile_dir``, quit on exit."""
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not os.access(binary, os.X_OK):
            raise BrowserUnavailable(
                f"{binary} not found: install the Debian packages chromium and chromium-driver "
                "(make chromium)"
            )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}")
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
