"""A headless chromium for the tests of attnkit's pages (selenium, the system's chromium and chromedriver).

Without chromium and chromedriver the browser tests skip, unless ATTNKIT_REQUIRE_BROWSER=1 (set by .ci/run), where
they fail: CI must not pass by skipping them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def start_browser(width: int = 1400, height: int = 1000, extra: list[str] | None = None):
    """A headless chromium driven by the system's chromedriver (Selenium Manager would try to download one);
    `extra`: more command-line switches for chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    chromedriver = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not (chromium and chromedriver):
        message = "needs chromium and chromedriver (apt-get install chromium chromium-driver), and selenium"
        if os.environ.get("ATTNKIT_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    switches = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"]
    for argument in switches + (extra or []):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 1000) -> None:
    """A PNG of the HTML file `page` as a browser shows it (also how docs/attention.png is made)."""
    driver = start_browser(width, height)
    try:
        driver.get(page.resolve().as_uri())
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
