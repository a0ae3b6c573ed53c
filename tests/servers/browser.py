"""A real headless browser for page tests: Debian's ``chromium`` driven through ``chromium-driver``.

When the binaries are missing and we are root, the Debian packages are installed first (like the
PostgreSQL tier does), so a clean CI machine needs no manual step. Selenium is pointed at the
installed driver, so Selenium Manager never tries to download one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.servers.apt import apt_install

PACKAGES = ("chromium", "chromium-driver")


class BrowserSetupError(RuntimeError):
    """The browser could not be installed or started; the message says why."""


def _binaries() -> tuple[Path, Path] | None:
    browser = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    return (Path(browser), Path(driver)) if browser and driver else None


def install_chromium() -> tuple[Path, Path]:
    """Install Debian's chromium and its WebDriver (root only); return (browser, driver)."""
    apt_install(PACKAGES, "chromium / chromedriver not found", BrowserSetupError)
    found = _binaries()
    if found is None:
        raise BrowserSetupError(f"installed {' '.join(PACKAGES)} but chromium / chromedriver are not on PATH")
    return found


def chromium_binaries() -> tuple[Path, Path]:
    return _binaries() or install_chromium()


@contextmanager
def headless_chromium(*, width: int = 1280, height: int = 1600) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium session whose console log can be read (``get_log("browser")``)."""
    browser, driver = chromium_binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in (
        "--headless=new",
        "--no-sandbox",  # running as root in a container: the sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        session = webdriver.Chrome(service=Service(executable_path=str(driver)), options=options)
    except Exception as e:  # selenium's errors name the missing library or the version mismatch
        raise BrowserSetupError(f"chromium did not start: {e}") from e
    try:
        yield session
    finally:
        session.quit()
