"""Headless Chromium (Debian's `chromium` and `chromium-driver`) on the SPA pages, and what the tests ask of it.

Every wait that times out says what the page showed instead, and what the browser's console said.
"""

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import NoSuchWindowException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from browser.static_server import ORIGIN

CHROMIUM = os.environ.get("THOR_BROWSER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = os.environ.get("THOR_BROWSER_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
PASSWORD = "browser-suite-Passw0rd!"
# What a failure message never prints: the query values that carry a token, a code or a signed state.
SECRET_QUERY_VALUES = re.compile(r"\b(access_token|refresh_token|request_token|code|state|ticket|token)=[^&\s\"']+")
WAIT_SECONDS = 20


def redacted(text: str) -> str:
    return SECRET_QUERY_VALUES.sub(r"\1=[redacted]", text)


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Both paths given, so Selenium Manager never looks for (or downloads) a driver.
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


class Spa:
    """One browser on the SPA's origin, with a fresh profile (empty localStorage)."""

    def __init__(self, driver: webdriver.Chrome):
        self.driver = driver
        self.console: list[dict] = []
        self.email = ""

    # --- console --------------------------------------------------------------------------------

    def console_entries(self) -> list[dict]:
        """Everything the console said so far (each call to Chrome's log drains it, so it is kept here)."""
        for handle in self._handles():
            try:
                self.driver.switch_to.window(handle)
                self.console.extend(self.driver.get_log("browser"))
            except (NoSuchWindowException, WebDriverException):
                continue
        return self.console

    def uncaught_errors(self) -> list[str]:
        return [entry["message"] for entry in self.console_entries() if "Uncaught" in entry["message"]]

    def _handles(self) -> list[str]:
        try:
            current = self.driver.current_window_handle
        except WebDriverException:
            current = None
        handles = list(self.driver.window_handles)
        # The window the test was in comes last, so the test stays in it.
        return [handle for handle in handles if handle != current] + ([current] if current in handles else [])

    # --- pages ----------------------------------------------------------------------------------

    def open(self, path: str) -> None:
        self.driver.get(f"{ORIGIN}{path}")

    def window_url(self, handle: str) -> str:
        """The address of another window ("" while it has none: closing, or between two pages); the test
        stays in the one it was in."""
        current = self.driver.current_window_handle
        try:
            self.driver.switch_to.window(handle)
            return self.driver.current_url or ""
        except NoSuchWindowException:
            return ""  # it closed itself meanwhile (seed 000's callback page does once it has posted)
        finally:
            self.driver.switch_to.window(current)

    def find(self, selector: str):
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def text(self, selector: str) -> str:
        return self.find(selector).text

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            element = self.find(f"input[name='{name}']")
            element.clear()
            element.send_keys(value)

    def click(self, selector: str) -> None:
        self.find(selector).click()

    def wait_for(self, what: str, condition: Callable[[], object], seconds: float = WAIT_SECONDS):
        """Poll `condition` until it answers something true; otherwise fail saying `what` did not happen."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                answer = condition()
            except WebDriverException:
                answer = None
            if answer:
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {seconds:.0f}s.\n{self.describe()}")
            time.sleep(0.1)

    def wait_for_text(self, selector: str, predicate: Callable[[str], bool], what: str, seconds: float = WAIT_SECONDS):
        return self.wait_for(what, lambda: (text := self.text(selector)) and predicate(text) and text, seconds)

    def describe(self) -> str:
        """Every window's address and text, and the console, for a failure message."""
        lines = []
        try:
            current = self.driver.current_window_handle
        except WebDriverException:
            current = None
        for handle in self.driver.window_handles:
            try:
                self.driver.switch_to.window(handle)
                body = self.driver.find_element(By.TAG_NAME, "body").text.strip().replace("\n", " | ")
                lines.append(f"window {self.driver.current_url}\n  shows: {body[:600]}")
            except WebDriverException as error:
                lines.append(f"window {handle}: unreadable ({error.msg})")
        if current in self.driver.window_handles:
            self.driver.switch_to.window(current)
        lines += [f"console {entry['level']}: {entry['message']}" for entry in self.console_entries()]
        return redacted("\n".join(lines))

    def save_evidence(self, folder: Path, name: str) -> list[Path]:
        """A screenshot and the HTML of every window, and the console, into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for index, handle in enumerate(self.driver.window_handles):
            try:
                self.driver.switch_to.window(handle)
                screenshot = folder / f"{name}-window{index}.png"
                self.driver.save_screenshot(str(screenshot))
                html = folder / f"{name}-window{index}.html"
                html.write_text(f"<!-- {redacted(self.driver.current_url)} -->\n{self.driver.page_source}")
                saved += [screenshot, html]
            except WebDriverException:
                continue
        console = folder / f"{name}-console.txt"
        console.write_text(
            redacted("\n".join(f"{entry['level']} {entry['message']}" for entry in self.console_entries()))
        )
        return [*saved, console]

    # --- the user -------------------------------------------------------------------------------

    def sign_up(self) -> str:
        """A new user of the demo tenant, signed up on the SPA's page; their tokens stay in localStorage."""
        self.email = f"spa-{uuid.uuid4().hex[:12]}@example.com"
        self.open("/index.html")
        self.fill({"email": self.email, "password": PASSWORD})
        self.click("#signup button")
        self.wait_for_text("#status", lambda text: text == f"Signed in as {self.email}", "Signing up on the SPA")
        return self.email
