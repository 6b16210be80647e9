"""Fixtures of the real-browser tests: the app served in-process, Debian's Chromium driven by
Playwright with the network cut.

Where a browser is missing: in CI (``CI`` set to anything but ``false``/``0``) the tests fail,
they do not skip; elsewhere (a fresh user machine) they skip and say what to install.  Never
``playwright install``: the tests use the system's Chromium (``apt-get install chromium``),
or the one in ``SPIKEVIZ_CHROMIUM``.
"""

import contextlib
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import panel as pn
import pytest

from spikeviz.config import Config
from spikeviz.data import load_mnist
from spikeviz.viz.app import TrainingApp, live_workers

CHROMIUM = os.environ.get("SPIKEVIZ_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
#: A closed tab's session is destroyed after the unused-session lifetime, checked this often
#: (Bokeh's defaults: 17 s and 15 s).  Not shorter: a page's session waits unused until its
#: websocket connects.
CHECK_SESSIONS_MS, SESSION_LIFETIME_MS = 500, 3000
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels():
    """Compile the training and inference kernels before any page waits for data: with a fresh
    numba cache (CI) the first sample would otherwise spend a wait's timeout compiling."""
    from spikeviz.train.trainer import Trainer

    config = Config(hidden=[20], train_samples=4, test_samples=2, test_duration_ms=50.0)
    trainer = Trainer(config, load_mnist(bundled=True))
    trainer.train_sample()
    trainer.evaluate()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives the served app in a real browser (Playwright + Chromium)")


def _missing(reason):
    if IN_CI:
        pytest.fail(f"{reason} (CI must run the browser tests: .ci/run installs Debian's "
                    "chromium; the test extras install Playwright)", pytrace=False)
    pytest.skip(f"{reason}: install Debian's chromium (`apt-get install chromium`) and the test "
                "extras (`pip install -e '.[test]'`) to run the browser tests")


@pytest.fixture(scope="session")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed")
    return sync_playwright


@pytest.fixture(scope="session")
def browser(sync_playwright):
    if not Path(CHROMIUM).is_file():
        _missing(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                             headless=True)
        yield browser
        browser.close()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """The in-process server: its URL and every TrainingApp its sessions built."""

    def __init__(self, port):
        self.port = port
        self.url = f"http://localhost:{port}/app"
        self.apps = []
        self.labs = []  # the NeuronLab of each session of the /lab page
        self.opened = None  # index in apps of the app of the tab the test opened
        self._lock = threading.Lock()

    def make_app(self):
        """What ``apps/train.py`` does per session, with a small network (784-100-10)."""
        app = TrainingApp(config=Config(hidden=[100]), data=load_mnist(bundled=True),
                          eval_samples=100)
        app.attach_session()
        with self._lock:
            self.apps.append(app)
        return app

    def make_lab_page(self):
        """What ``apps/train.py`` serves: the app, the neuron lab and the sweeps as tabs (no
        sweep to show here)."""
        from spikeviz.viz.lab import NeuronLab
        from spikeviz.viz.page import app_page

        app = self.make_app()
        neuron_lab = NeuronLab(training_app=app)
        with self._lock:
            self.labs.append(neuron_lab)
        return app_page(app, neuron_lab, sweep_folder=Path(__file__).parent / "no-sweeps-here")


def wait_until(condition, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for: {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def serving(served, routes):
    """Serve ``routes`` (name -> function building a session's page) on ``served.port`` in this
    process until the block ends; then close every app the sessions built."""
    port = served.port
    server = pn.serve(routes, port=port, address="127.0.0.1",
                      allow_websocket_origin=[f"localhost:{port}", f"127.0.0.1:{port}"],
                      threaded=True, show=False,
                      check_unused_sessions_milliseconds=CHECK_SESSIONS_MS,
                      unused_session_lifetime_milliseconds=SESSION_LIFETIME_MS)
    try:
        wait_until(lambda: _accepts(port), 30, f"the server on port {port}")
        yield served
    finally:
        for app in served.apps:
            app.close(timeout=5)
        pn.state.kill_all_servers()
        server.join(timeout=5)


@pytest.fixture(scope="session")
def served():
    served = Served(_free_port())
    with serving(served, {"app": served.make_app, "lab": served.make_lab_page}):
        yield served


def _accepts(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def outside_requests():
    """The URLs of every request the page tried outside this machine (all aborted)."""
    return []


@pytest.fixture
def page(browser, served, outside_requests, request):
    """A fresh tab on the app with the network cut: anything not on localhost is aborted and
    recorded; the test fails if there was any.  Closing it ends its session and worker.
    Parametrized indirectly, it opens that page instead: ``lab``, the app and the lab as tabs."""
    context = browser.new_context(viewport={"width": 1400, "height": 1050})

    def cut(route):
        host = urlsplit(route.request.url).hostname or ""
        if host in LOCAL_HOSTS or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside_requests.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", cut)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    served.opened = len(served.apps)  # this tab's session builds the next app
    page.goto(served.url.replace("/app", "/" + getattr(request, "param", "app")))
    page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                           "Bokeh.documents[0].get_model_by_name('raster') !== null")
    yield page
    context.close()
    # the closed tab's session is destroyed and its worker stops: no run leaks into the next test
    wait_until(lambda: live_workers() == 0, 15, "the closed tab's worker to stop")
    assert not outside_requests, f"the page tried to reach the network: {outside_requests}"
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def app(page, served):
    """The server-side TrainingApp of the test's tab (built while the page loaded)."""
    return served.apps[served.opened]
