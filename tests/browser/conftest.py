"""A real Streamlit server and a real Chromium (Debian package) for the whole session."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.trained import ROOT, pretrained_root

SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, env: dict, log: Path) -> subprocess.Popen:
    """`streamlit run app/main.py` with the flags a test server needs (NOTES §4); waits for /_stcore/health."""
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--runner.postScriptGC", "false"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as response:
                if response.read() == b"ok":
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"streamlit did not answer /_stcore/health within 60 s: {log.read_text()[-2000:]}")


def wait_idle(page, seconds: float = 120) -> None:
    """Until the script has finished its run (Streamlit's running indicator gone twice in a row)."""
    deadline, quiet = time.time() + seconds, 0
    while quiet < 2:
        assert time.time() < deadline, f"the app kept running for {seconds:.0f} s"
        quiet = quiet + 1 if page.get_by_test_id("stStatusWidget").count() == 0 else 0
        time.sleep(0.3)


def draw_stroke(page) -> None:
    """A mouse-drawn vertical stroke, like a "1", on the page's drawing canvas."""
    canvas = page.locator("canvas.upper-canvas")
    canvas.wait_for()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.15
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 21):  # a vertical stroke, like a "1"
        page.mouse.move(x + step * 0.5, y + step * box["height"] * 0.035)
    page.mouse.up()


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[str]:
    """An exported web page's folder on a static server at 127.0.0.1 (python's http.server, in a thread): the URL of
    its index.html."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def offline_page(page, url: str) -> Iterator:
    """`page` at an exported page's URL once its model is loaded; afterwards, every request it made must have stayed
    on 127.0.0.1 (or blob:/data:): the page needs no network."""
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(url)
    page.wait_for_function("window.pkd !== undefined")
    page.evaluate("window.pkd.ready")
    yield page
    assert all(url.startswith(("http://127.0.0.1:", "blob:", "data:")) for url in requests), requests


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        if os.environ.get("PKD_REQUIRE_BROWSER") == "1":
            pytest.fail("PKD_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="session")
def shipped_root(tmp_path_factory) -> Path:
    return pretrained_root(tmp_path_factory)


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-runs")


@pytest.fixture(scope="session")
def server(chromium, shipped_root, runs_dir, tmp_path_factory):  # noqa: ARG001 - no server without a browser
    """Base URL of a session-scoped app server; on teardown every run it started is stopped."""
    from pkd import launch
    from pkd.runs import list_runs

    port = free_port()
    env = dict(os.environ, PKD_RUNS_DIR=str(runs_dir), PKD_PRETRAINED_DIR=str(shipped_root),
               PYTHONPATH=str(ROOT))
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    proc = start_server(port, env, log)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    for run in list_runs(runs_dir):
        if launch.stop_run(run):
            deadline = time.time() + 60
            while run.state() == "running" and time.time() < deadline:
                time.sleep(0.2)


@pytest.fixture(scope="session")
def browser(chromium):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(60_000)  # a busy 2-core machine (other engineers train beside the tests)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
