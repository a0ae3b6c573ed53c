"""The web playground end to end in a real browser: Debian's chromium through chromedriver, against
``python -m stack.serve`` (what ``make serve`` / ``make playground`` run) on loopback.

Sign in, pick concepts, upload two photos straight to their presigned URLs, analyze, exclude an
instance, set and save a rule, apply, wait for done, download the set's zip and read its manifest.
A screenshot of every stage is kept (``.artifacts/screenshots/playground/``; with
``S3_PLAYGROUND_DOCS=1`` also ``docs/images/playground/`` for docs/playground.md). Any message the
page logs at error level fails the test.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from applier.params import parse_color
from scripts.demo.stack import EmbeddedStack, StackConfig
from scripts.scenes import interior_scene
from server.inference.artifacts import MODEL_VENV, REPO_ROOT
from tests.servers.browser import headless_chromium

pytestmark = pytest.mark.integration

SCREENSHOTS = REPO_ROOT / ".artifacts" / "screenshots" / "playground"
DOCS_IMAGES = REPO_ROOT / "docs" / "images" / "playground"
PLAYGROUND = "/playground"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    if not (MODEL_VENV / "bin" / "python").exists():
        pytest.fail("the model environment is missing: run `make model-venv` (make test does)")
    root = tmp_path_factory.mktemp("playground")
    config = StackConfig(data_dir=root / "data", log_path=root / "server.log", env={"S3_PLAYGROUND_PATH": PLAYGROUND})
    with EmbeddedStack(config) as stack:
        try:
            stack.wait_healthy(timeout_s=300)
        except Exception:
            print(stack.log_tail(60))
            raise
        yield stack


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with headless_chromium(width=1280, height=1800) as session:
        yield session


def _photos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in (3, 4):
        path = folder / f"room-{seed}.jpg"
        Image.fromarray(interior_scene(400, 300, seed=seed).image).save(path, quality=90)
        paths.append(path)
    return paths


class Page:
    """The playground in the browser: waits, clicks, screenshots, and the console log check."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.wait = WebDriverWait(driver, 240, poll_frequency=0.25)
        self.errors: list[dict[str, Any]] = []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def by_id(self, element_id: str) -> Any:
        return self.driver.find_element(By.ID, element_id)

    def until(self, condition: Callable[[], object], what: str, *, expected_status: int | None = None) -> None:
        def check(_: WebDriver) -> object:
            nonlocal expected_status
            if self.fail_on_errors(expected_status=expected_status):
                expected_status = None  # excused once only
            # The browser's log line may come after the page has already shown the error: wait for both.
            return expected_status is None and condition()

        try:
            self.wait.until(check)
        except Exception as e:
            self.driver.save_screenshot(str(SCREENSHOTS / "failure.png"))
            alert = self.by_id("alert")
            shown = alert.text if alert.is_displayed() else "(no alert shown)"
            console = [entry.get("message") for entry in self.driver.get_log("browser")]  # type: ignore[no-untyped-call]
            status = self.by_id("status").text + " | outputs: " + self.by_id("outputs").text[:500]
            raise AssertionError(
                f"waiting for {what}: {type(e).__name__}; page alert: {shown}; status: {status!r}; console: {console}"
            ) from e

    def click(self, element_id: str) -> None:
        self.until(lambda: self.by_id(element_id).is_enabled(), f"#{element_id} to be enabled")
        self.by_id(element_id).click()

    def shot(self, name: str, section: str | None = None) -> None:
        path = SCREENSHOTS / f"{name}.png"
        target = self.by_id(section) if section else None
        if target is not None:
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", target)
            target.screenshot(str(path))
        else:
            self.driver.save_screenshot(str(path))
        if os.environ.get("S3_PLAYGROUND_DOCS") == "1":
            DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_IMAGES / path.name)

    def fail_on_errors(self, *, expected_status: int | None = None) -> bool:
        """Fail on any error the page logged; ``expected_status`` excuses the browser's own line about
        the one HTTP error a step provokes on purpose. True when that line was seen (and excused)."""
        excused = False
        for entry in self.driver.get_log("browser"):  # type: ignore[no-untyped-call]
            message = str(entry.get("message", ""))
            if entry.get("level") != "SEVERE":
                continue
            if expected_status is not None and not excused and f"status of {expected_status}" in message:
                excused = True
                continue
            self.errors.append(entry)
        assert not self.errors, f"the page logged errors: {json.dumps(self.errors, indent=1)}"
        return excused


def test_the_five_stages_in_a_real_browser(served: EmbeddedStack, browser: webdriver.Chrome, tmp_path: Path) -> None:
    page = Page(browser, served.base_url)
    browser.get(served.base_url + PLAYGROUND)  # redirects to PLAYGROUND + "/"
    page.until(lambda: browser.current_url.endswith(PLAYGROUND + "/"), "the page")
    page.shot("0-start")

    # Sign in: plan and credits shown, and the notice that the masks come from the tiny model.
    page.click("sign-in")
    page.until(lambda: "Credits:" in page.by_id("account").text, "the account line")
    page.until(lambda: page.by_id("model-notice").is_displayed(), "the tiny-model notice")
    assert "tiny random-weight" in page.by_id("model-notice").text
    assert "Plan: free" in page.by_id("account").text
    credits_before = int(page.by_id("credits").text.split(":")[1])

    # Palette: the interior preset's concept buttons.
    page.until(
        lambda: Select(page.by_id("preset")).first_selected_option.get_attribute("value") == "interior", "presets"
    )
    for concept in ("Wall", "Floor"):
        chip = f'#concepts [data-concept="{concept}"]'
        browser.find_element(By.CSS_SELECTOR, chip).click()  # the chips are drawn again on every change
        assert browser.find_element(By.CSS_SELECTOR, chip).get_attribute("aria-pressed") == "true"
    page.shot("1-palette", "stage-palette")

    # Photos: two files through the file input, uploaded straight to their presigned URLs.
    photos = _photos(tmp_path / "photos")
    page.by_id("files").send_keys("\n".join(str(p) for p in photos))
    page.click("upload")
    page.until(lambda: "uploaded, 2 photo(s)" in page.by_id("job-line").text, "the confirmed upload")
    bars = browser.find_elements(By.CSS_SELECTOR, "#file-list progress")
    assert [b.get_attribute("value") for b in bars] == ["1", "1"]
    page.shot("2-photos", "stage-upload")

    # Instances: analyze, then exclude Wall #1 on the first photo; hovering a card shows its mask.
    page.click("analyze")
    cards = '#instances .item[data-idx="0"] .card[data-concept="Wall"]'
    page.until(lambda: browser.find_elements(By.CSS_SELECTOR, cards), "the instance cards")
    first = browser.find_element(By.CSS_SELECTOR, cards + '[data-number="1"]')
    first.find_element(By.CSS_SELECTOR, 'input[value="exclude"]').click()
    first = browser.find_element(By.CSS_SELECTOR, cards + '[data-number="1"]')
    assert "excluded" in (first.get_attribute("class") or "")
    browser.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('mouseenter'))",
        browser.find_element(By.CSS_SELECTOR, cards + '[data-number="1"]'),  # hovering draws its mask
    )
    page.shot("3-instances", "stage-instances")

    # Protect: the preset's defaults are preselected.
    for layer in ("Text", "Logo", "edges", "highlights"):
        layer_chip = browser.find_element(By.CSS_SELECTOR, f'#protect [data-layer="{layer}"]')
        assert layer_chip.get_attribute("aria-pressed") == "true", layer
    page.shot("4-protect", "stage-protect")

    # Rules: recolour the walls, built from the published action parameters; save within the slots.
    wall = browser.find_element(By.CSS_SELECTOR, '#rule-editor [data-concept="Wall"]')
    Select(wall.find_element(By.CSS_SELECTOR, 'select[data-field="action"]')).select_by_value("recolor")
    colour = browser.find_element(By.ID, "param-Wall-value")
    colour.clear()
    colour.send_keys("sage")
    page.by_id("rule-name").send_keys("Sage walls")
    page.click("save-rule")
    page.until(lambda: "1 of 2 slots used" in page.by_id("rule-slots").text, "the saved rule")
    assert Select(page.by_id("saved-rules")).first_selected_option.text == "Sage walls"
    page.shot("5-rules", "stage-rules")
    # A refusal is shown with its contract code: the free plan has two rule slots.
    for name in ("Second", "Third"):
        page.by_id("rule-name").clear()
        page.by_id("rule-name").send_keys(name)
        page.click("save-rule")
        if name == "Second":
            page.until(lambda: "2 of 2 slots used" in page.by_id("rule-slots").text, "the second rule")
    page.until(lambda: page.by_id("alert").is_displayed(), "the refusal", expected_status=409)
    assert page.by_id("alert").text.startswith("RULE_SLOT_LIMIT:")

    # Apply with live progress until done.
    page.click("execute")
    page.until(lambda: page.by_id("status").text.startswith("done"), "the job to be done")
    assert page.by_id("status").text.startswith("done: 2 of 2 done")
    page.shot("6-apply", "stage-execute")

    # Output set: before/after per photo, renditions, the zip.
    page.until(lambda: page.by_id("set-link").is_displayed(), "the set link")
    page.until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#outputs .compare")) == 2, "before/after views")
    assert "Protect check passed" in page.by_id("outputs").text
    page.shot("7-output", "stage-output")
    href = page.by_id("set-link").get_attribute("href")
    assert href
    zipped = httpx.get(href, timeout=30)
    assert zipped.status_code == 200
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert len(manifest["items"]) == 2
    wall_rule = manifest["rule"]["Wall"]
    assert (wall_rule["action"], wall_rule["value"]) == ("recolor", parse_color("sage"))
    assert manifest["items"][0]["instances"]["Wall"]["exclude"] == [1]
    assert set(manifest["protect"]) == {"Text", "Logo", "edges", "highlights"}

    credits_after = int(page.by_id("credits").text.split(":")[1])
    assert credits_after < credits_before  # the album was charged, as the account line shows

    # Phone width: the same page, one column.
    browser.set_window_size(390, 1600)
    browser.execute_script("window.scrollTo(0, 0)")
    page.shot("8-phone")
    page.fail_on_errors()
