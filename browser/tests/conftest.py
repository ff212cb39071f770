"""The browser suite's world: Thor and the sandbox as `make run` starts them (browser/stack.py), the SPA pages on
http://localhost:5173, and a fresh headless Chromium for each test.

A test fails on any `Uncaught` error in the browser's console. A failed test leaves a screenshot and the HTML of
each window, and the console, in a temporary folder whose path it prints.
"""

import base64
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from browser import stack as thor_stack
from browser.spa import PASSWORD, Spa, chromium
from browser.static_server import StaticServer

_evidence = {}
_reports_key = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    item.stash.setdefault(_reports_key, {})[report.when] = report


def pytest_collection_modifyitems(items):
    # The first test also waits for Thor to migrate and start (half a minute on a busy machine).
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(300))


def _evidence_folder() -> Path:
    if "folder" not in _evidence:
        _evidence["folder"] = Path(tempfile.mkdtemp(prefix="thor-browser-failures-"))
    return _evidence["folder"]


@pytest.fixture(scope="session")
def stack(request):
    running = thor_stack.start()
    yield running
    running.stop()
    # Thor's and the sandbox's logs are kept for a run that failed (its tests print where).
    if not request.session.testsfailed:
        shutil.rmtree(running.logs, ignore_errors=True)


@pytest.fixture(scope="session")
def pages(stack):
    server = StaticServer(thor_url=stack.thor_url).start()
    yield
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def early_session(stack) -> dict:
    """A user signed up as the suite starts, whose tokens an SPA tab kept: by the time the refresh flow runs
    (last), their access token has expired or nearly so, and that test waits for the rest."""
    email = f"early-{time.monotonic_ns()}@example.com"
    response = requests.post(f"{stack.api}/auth/register/", json={"email": email, "password": PASSWORD}, timeout=30)
    response.raise_for_status()
    tokens = response.json()["tokens"]
    return {"email": email, **tokens, "access_expires_at": _claims(tokens["access"])["exp"]}


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def spa(request, pages, stack):
    browser = Spa(chromium())
    yield browser
    try:
        uncaught = browser.uncaught_errors()
        failed = any(report.failed for report in request.node.stash.get(_reports_key, {}).values())
        if uncaught or failed:
            saved = browser.save_evidence(_evidence_folder(), request.node.name.replace("/", "_"))
            print(f"\nScreenshots, HTML and console: {saved[0].parent}\nThor and sandbox logs: {stack.logs}")
    finally:
        browser.driver.quit()
    # A test that failed has said so, its console included; one that passed fails here on an uncaught error.
    assert failed or not uncaught, "Uncaught errors in the browser's console:\n" + "\n".join(uncaught)
