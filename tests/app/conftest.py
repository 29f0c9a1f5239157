"""The browser-test harness: the real FiftyOne App, driven by headless Chromium through Playwright.

Every test in this folder carries the ``app`` marker (``python3 -m pytest -q -m app tests`` selects them).
What it provides:

- ``app_server(delegation=False)``: the App server (``python -m fiftyone.server.main``) on 127.0.0.1 and a
  free port, started once per setting and shared by the session. It sees this run's private database (the
  root conftest's ``FIFTYONE_DATABASE_NAME`` on the same mongod as the tests), its plugins folder (a link to
  this checkout) and this checkout on ``PYTHONPATH``. ``delegation=True`` starts it with
  ``FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS=true``, the setting that lets the open-source App schedule work.
- ``delegated_launcher()``: a real ``fiftyone delegated launch`` process with the same environment.
- ``app_dataset(name)``: a persistent dataset of the five fixture PNGs (other processes only see persistent
  datasets), deleted after the test.
- ``app_page(delegation=False)``: an :class:`AppPage` over a fresh browser page: open a dataset, open the operator browser, pick an
  operator, fill its form by the fields' labels, execute (immediately or scheduled), wait for the result.

Chromium is Debian's (``/usr/bin/chromium``, or ``FIFTYONE_RAM_CHROMIUM``), launched through
``executable_path``: nothing is downloaded. A missing browser or Playwright fails the tests (they must not be
skipped silently in CI); ``scripts/setup.sh`` installs both.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PARITY = ROOT.parent / "shared" / "fixtures" / "parity"
PNG_NAMES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.png", "camera.png")

#: Chromium flags for a sandbox-less, offline container (what FiftyOne's own Playwright set-up uses, plus no
#: background traffic that would only fail offline).
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage")
#: CSS animations off (spinners, progress bars, loading placeholders: they repeat until the page changes, and
#: headless chromium paints each frame in software, half the browser's CPU while tests wait). Transitions stay:
#: the App's notifications leave by theirs, and without them one stayed over a form's buttons.
NO_ANIMATIONS = """
document.addEventListener("DOMContentLoaded", () => {
  const style = document.createElement("style");
  style.textContent = "*, *::before, *::after { animation: none !important; }";
  document.head.appendChild(style);
});
"""
#: Seconds the App may take for one step on a loaded two-core machine (first page load, a model run).
STEP_TIMEOUT_S = 300
SERVER_START_TIMEOUT_S = 120
#: Seconds to wait for an element of the page or a form (a re-resolved form on a loaded machine).
ELEMENT_TIMEOUT_S = 60
#: The debounce of the App's form requests (an operator form re-resolves at most once per this many seconds).
FORM_DEBOUNCE_S = 0.5
#: Run in every page before the App's scripts: the App's first-visit 'Explore Enterprise' popover is marked as
#: seen (the key the App itself writes when it is dismissed), so no test waits for it to show, or for it not to.
RETURNING_USER = "window.localStorage.setItem('fiftyone-enterprise-tooltip-seen', 'true')"
#: The title of the output a failed run shows (``fiftyone_ram.app.execution.failure_output``).
FAILURE_HEADING = "The run failed"

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def pytest_collection_modifyitems(config, items):
    """Mark every test of this folder ``app`` and ``slow`` (a browser and an App server: seconds each; a conftest
    cannot set ``pytestmark`` for its folder)."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.app)
            item.add_marker(pytest.mark.slow)


def _chromium() -> str:
    path = os.environ.get("FIFTYONE_RAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("the App tests need Debian's chromium (apt-get install chromium; scripts/setup.sh does it)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes that share this run's database ----------------------------------------------------------------


@pytest.fixture(scope="session")
def child_env() -> dict[str, str]:
    """The environment of the App server and the delegated launcher: this process's FiftyOne settings, this
    checkout first on ``PYTHONPATH``, and the address of the mongod this process uses (so that no child starts
    a database service of its own)."""
    import fiftyone.core.odm as foo

    env = dict(os.environ)
    if not env.get("FIFTYONE_DATABASE_URI"):
        host, port = foo.get_db_client().address
        env["FIFTYONE_DATABASE_URI"] = f"mongodb://{host}:{port}"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS", None)  # each server states its own setting
    return env


@dataclass
class ChildProcess:
    """A process the harness started, with its log (shown when it fails)."""

    process: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def stop(self) -> None:
        self.terminate()
        self.wait()

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> None:
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start(command: list[str], env: dict[str, str], log: Path) -> ChildProcess:
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    return ChildProcess(process, log)


@dataclass
class AppServer(ChildProcess):
    url: str = ""
    delegation: bool = False

    def dataset_url(self, name: str) -> str:
        return f"{self.url}/datasets/{name}"


def _wait_for_server(server: AppServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"the App server exited with {server.process.returncode}:\n{server.tail()}")
        try:
            with urllib.request.urlopen(f"{server.url}/fiftyone", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    server.stop()
    pytest.fail(f"the App server did not answer within {SERVER_START_TIMEOUT_S} s:\n{server.tail()}")


@pytest.fixture(scope="session")
def app_server(child_env, tmp_path_factory) -> Iterator[Callable[..., AppServer]]:
    """``app_server(delegation=False)``: the running App server with that orchestrator setting (one per
    setting for the whole session)."""
    servers: dict[bool, AppServer] = {}
    folder = tmp_path_factory.mktemp("app-server")

    def get(delegation: bool = False) -> AppServer:
        if delegation not in servers:
            port = _free_port()
            # The server's execution-store notification service sleeps this long between polls, and its stop
            # waits for the sleep (5 s by default); no test here watches the execution store.
            env = dict(child_env, FIFTYONE_EXECUTION_STORE_POLL_INTERVAL_SECONDS="1")
            if delegation:
                env["FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS"] = "true"
            child = _start([sys.executable, "-m", "fiftyone.server.main", "--address", "127.0.0.1",
                            "--port", str(port)], env, folder / f"server-{port}.log")
            server = AppServer(child.process, child.log, url=f"http://127.0.0.1:{port}", delegation=delegation)
            _wait_for_server(server)
            servers[delegation] = server
        return servers[delegation]

    yield get
    # Stopped together: an App server takes up to one execution-store poll interval to exit (its notification
    # service's stop waits for the poll's sleep).
    for server in servers.values():
        server.terminate()
    for server in servers.values():
        server.wait()


@pytest.fixture()
def delegated_launcher(child_env, tmp_path) -> Iterator[Callable[[], ChildProcess]]:
    """``delegated_launcher()``: starts ``fiftyone delegated launch`` (what a user runs beside the App to
    execute scheduled operations); stopped after the test."""
    started: list[ChildProcess] = []

    def start() -> ChildProcess:
        env = dict(child_env, FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS="true")
        launcher = shutil.which("fiftyone", path=os.path.dirname(sys.executable)) or shutil.which("fiftyone")
        command = [launcher] if launcher else [sys.executable, "-m", "fiftyone.core.cli"]
        child = _start([*command, "delegated", "launch"], env, tmp_path / f"launcher-{len(started)}.log")
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


# -- datasets -------------------------------------------------------------------------------------------------


@pytest.fixture()
def app_dataset(tmp_path) -> Iterator[Callable[..., object]]:
    """``app_dataset(name, count=5)``: a new persistent dataset of the first ``count`` fixture PNGs (copied
    into the test's folder), deleted after the test."""
    import fiftyone as fo

    made = []

    def make(name: str, count: int = len(PNG_NAMES)):
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
        folder = tmp_path / name
        folder.mkdir()
        paths = [shutil.copyfile(PARITY / png, folder / png) for png in PNG_NAMES[:count]]
        dataset = fo.Dataset(name, persistent=True)
        dataset.add_samples([fo.Sample(filepath=str(p)) for p in paths])
        made.append(dataset)
        return dataset

    yield make
    for dataset in made:
        if not dataset.deleted:
            dataset.delete()


# -- the browser --------------------------------------------------------------------------------------------


# Module scope, not session: a started sync Playwright keeps an asyncio loop running in this thread, and
# FiftyOne's execute_operator then returns a Task instead of a result in every later (non-App) test.
@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the App tests need the playwright package (pip install playwright; scripts/setup.sh does "
                    "it; never `playwright install`: Debian's chromium is used)")
    from playwright.sync_api import expect

    # an assertion on the page waits as long as finding an element does (a plot drawn on a loaded machine)
    expect.set_options(timeout=ELEMENT_TIMEOUT_S * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), args=list(CHROMIUM_ARGS))
        yield chromium
        chromium.close()


@dataclass
class AppPage:
    """One browser page on the App, with the steps a user takes. Form fields are found by their labels (the
    App's operator forms carry no test ids on fields)."""

    page: object  # playwright.sync_api.Page
    server: AppServer
    console: list[str] = field(default_factory=list)
    #: Form requests (re-resolutions) sent and not yet answered, and sent in all (:meth:`watch_forms`).
    resolving: int = 0
    sent: int = 0

    # -- navigation

    def open_dataset(self, name: str) -> None:
        """Load the dataset's grid. The first-visit 'Explore Enterprise' popover (whose invisible backdrop
        swallows clicks) does not show: every context starts as a returning user who has seen it
        (:data:`RETURNING_USER`)."""
        self.page.goto(self.server.dataset_url(name))
        self.page.wait_for_selector("[data-cy=action-browse-operations]")

    def open_operator(self, query: str, label: str) -> None:
        """Open the operator browser (backtick), search ``query`` and pick the entry showing ``label``."""
        self.page.keyboard.press("`")
        browser = self.page.locator("[data-cy=operators-browser]")
        browser.wait_for()
        self.page.fill("[data-cy=operators-browser-search]", query)
        browser.get_by_text(label, exact=True).first.click()
        self.prompt.wait_for()

    @property
    def prompt(self):
        return self.page.locator("[data-cy=operators-prompt-modal]")

    @property
    def output(self):
        """The dialog showing a run's output (the form's, or the one a streamed run opens when done)."""
        return self.page.locator("[role=dialog]").last

    # -- the form

    def field(self, label: str):
        """The input (text, number or select) that follows the field label ``label``."""
        title = self.prompt.locator("p").filter(has_text=_exactly(label)).first
        title.wait_for()
        return title.locator("xpath=following::*[self::input[not(@type='radio') and not(@type='checkbox')]"
                             " or self::textarea or @role='combobox'][1]")

    def fill(self, label: str, value: object) -> None:
        """Type into a text or number field, then leave it (forms re-resolve on change)."""
        box = self.field(label)
        with self.changing():
            box.fill(str(value))
            box.press("Tab")

    def choose(self, option: str) -> None:
        """Pick a radio button by its option label."""
        with self.changing():
            self.prompt.get_by_role("radio", name=option, exact=True).check()

    def select(self, label: str, option: str) -> None:
        """Pick ``option`` in the dropdown under ``label``."""
        self.field(label).click()
        with self.changing():
            self.page.get_by_role("option", name=option, exact=True).click()
            self._close_dropdown()

    def _close_dropdown(self) -> None:
        """A dropdown picked from while the form re-resolved (a file written meanwhile, say) can stay open, and
        then hides the rest of the form from the accessibility tree: close it as a user does, with Escape (an
        open dropdown takes that key for itself)."""
        listbox = self.page.get_by_role("listbox").first
        try:
            listbox.wait_for(state="hidden", timeout=3000)
        except Exception:  # still open
            self.page.keyboard.press("Escape")
            listbox.wait_for(state="hidden")

    def select_in_page(self, label: str, option: str) -> None:
        """Pick ``option`` in the dropdown or autocomplete under ``label`` in a panel (outside any form)."""
        title = self.page.get_by_text(label, exact=True).first
        title.locator("xpath=following::*[@role='combobox'][1]").click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def check(self, label: str, value: bool = True) -> None:
        import re

        # a checkbox's accessible name is its label followed by its description
        box = self.prompt.get_by_role("checkbox", name=re.compile(rf"^\s*{re.escape(label)}"))
        with self.changing():
            box.set_checked(value)

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Around a change of the form: afterwards, :meth:`settle` on the request that change caused."""
        before = self.sent
        yield
        self.settle(since=before)

    def settle(self, seconds: float = FORM_DEBOUNCE_S, *, since: int | None = None) -> None:
        """Wait until a dynamic form has re-resolved its inputs on the server after a change, then for the
        answers still on their way (slow on a loaded machine: a dropdown opened meanwhile is re-rendered under
        the pointer). The App sends a form's request at once after a quiet spell, or at the end of its 500 ms
        debounce after another change: given ``since`` (the count of requests sent before the change), the wait
        ends as soon as the change's request is answered (at most ``seconds`` and a margin for it to be sent);
        without, it waits ``seconds`` first."""
        if since is None:
            self.page.wait_for_timeout(int(seconds * 1000))
        else:
            sent_by = time.monotonic() + seconds + 0.25
            while self.sent == since and time.monotonic() < sent_by:
                self.page.wait_for_timeout(25)
        deadline = time.monotonic() + ELEMENT_TIMEOUT_S
        while self.resolving and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)

    def watch_forms(self) -> None:
        """Count the form requests in flight (``/operators/resolve-type`` and ``resolve-execution-options``)."""
        def count(step: int):
            def on(request) -> None:
                if "/operators/resolve-" in request.url:
                    self.resolving += step
                    if step > 0:
                        self.sent += 1
            return on

        self.page.on("request", count(1))
        self.page.on("requestfinished", count(-1))
        self.page.on("requestfailed", count(-1))

    def text(self) -> str:
        return self.prompt.inner_text()

    # -- execution

    @property
    def _execute_button(self):
        return self.prompt.get_by_role("button", name="Execute", exact=True)

    @property
    def _execute_menu_button(self):
        """The caret of the Execute split button (present when the operator offers more than one mode)."""
        return self.prompt.locator("[aria-label='split button'] button[aria-haspopup=menu]")

    def execute(self, *, schedule: bool = False) -> None:
        """Run the operator: the Execute button, or the split button's 'Schedule' entry."""
        self._execute_button.or_(self.prompt.get_by_role("button", name="Schedule", exact=True)).first.wait_for()
        if schedule:
            lone = self.prompt.get_by_role("button", name="Schedule", exact=True)
            if lone.count() and not self._execute_menu_button.count():  # the operator only schedules
                lone.click()
                return
            self._execute_menu_button.click()
            self.page.get_by_role("menuitem").filter(has_text="Schedule").first.click()
            self.prompt.get_by_role("button", name="Schedule", exact=True).click()
        else:
            if not self._execute_button.count():  # scheduling is the default here: choose to run now
                self._execute_menu_button.click()
                self.page.get_by_role("menuitem").filter(has_text="Execute").first.click()
            self._execute_button.click()

    def execution_choices(self) -> list[str]:
        """The entries of the Execute split button's menu, e.g. ['Execute FOR TESTING ...', 'Schedule NOT
        AVAILABLE ...'], or the lone button's name when the operator has one mode (['Execute'] for immediate
        only, ['Schedule'] for delegated only)."""
        lone = self._execute_button.or_(self.prompt.get_by_role("button", name="Schedule", exact=True)).first
        lone.wait_for()
        if not self._execute_menu_button.count():
            return [" ".join(lone.inner_text().split())]
        self._execute_menu_button.click()
        items = self.page.get_by_role("menuitem")
        items.first.wait_for()
        texts = [" ".join(t.split()) for t in items.all_inner_texts()]
        # Close the menu by re-picking the current choice (Escape would also close the form)
        self.page.locator("[role=menuitem].Mui-selected").first.click()
        items.first.wait_for(state="hidden")
        return texts

    def wait_for_output(self, heading: str, timeout_s: float = STEP_TIMEOUT_S) -> str:
        """Wait until a dialog shows ``heading`` (a title or field label of an operator's output: in the form's
        modal, or in the one ``show_output`` opens after a streamed run); returns that dialog's text. A run
        that fails instead ends the wait at once, with its one line."""
        dialogs = self.page.locator("[role=dialog]")
        # Case-sensitive: Playwright's plain text match ignores case, and a run's progress line ("3 tags
        # flagged") would pass for its output's field ("Tags flagged").
        heading_text = re.compile(re.escape(heading))
        wanted = dialogs.get_by_text(heading_text).first
        failed = dialogs.get_by_text(FAILURE_HEADING, exact=True).or_(
            self.page.get_by_text("Error occurred during operator execution")).first
        try:
            wanted.or_(failed).wait_for(timeout=timeout_s * 1000)
        except Exception:
            self.page.screenshot(path=str(self.server.log.with_name(f"failed-{heading.replace(' ', '_')}.png")))
            print("browser console errors:", *self.console[-20:], sep="\n")
            raise
        if not wanted.is_visible():
            shown = dialogs.filter(has=failed)
            text = shown.last.inner_text() if shown.count() else failed.inner_text()
            raise AssertionError(f"the run failed instead of showing {heading!r}: {' '.join(text.split())}")
        return dialogs.filter(has_text=heading_text).last.inner_text()

    def wait_for_failure(self, timeout_s: float = STEP_TIMEOUT_S) -> str:
        """Wait until a run's failure shows (the dialog titled "The run failed"); returns its one line."""
        dialog = self.page.locator("[role=dialog]").filter(has=self.page.get_by_text(FAILURE_HEADING, exact=True))
        dialog.last.wait_for(timeout=timeout_s * 1000)
        return " ".join(dialog.last.inner_text().replace(FAILURE_HEADING, "").split())

    def close_output(self) -> None:
        """Close the output dialog (its Close / Done button)."""
        dialog = self.page.locator("[role=dialog]").last
        dialog.get_by_role("button", name="Close").or_(dialog.get_by_role("button", name="Done")).first.click()

    def wait_for_text(self, text: str, timeout_s: float = STEP_TIMEOUT_S):
        """Wait until ``text`` shows anywhere on the page (a notification, a panel)."""
        found = self.page.get_by_text(text).first
        found.wait_for(timeout=timeout_s * 1000)
        return found

    def docs_shot(self, name: str, *, target=None, prompt_only: bool = False) -> Path:
        """A screenshot kept beside the server's log; also written to docs/images (the docs' figures) only when
        FIFTYONE_RAM_DOCS_SCREENSHOTS=1, so that a test run never rewrites files of the checkout."""
        target = target if target is not None else self.prompt if prompt_only else self.page
        kept = self.screenshot_of(target, self.server.log.with_name(name))
        if os.environ.get("FIFTYONE_RAM_DOCS_SCREENSHOTS") == "1":
            return self.screenshot_of(target, DOCS_IMAGES / name)
        return kept

    def screenshot(self, path: Path, *, prompt_only: bool = False) -> Path:
        """A small PNG of the page (or of the prompt alone) for the docs."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return self.screenshot_of(self.prompt if prompt_only else self.page, path)

    def screenshot_of(self, target, path: Path) -> Path:
        """A small PNG of a page or locator (e.g. an output dialog) for the docs."""
        path.parent.mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(path))
        return shrink_png(path)


def shrink_png(path: Path, *, colors: int = 64, max_width: int = 1000) -> Path:
    """Docs screenshots stay small in the repository: at most ``max_width`` px wide, a ``colors`` palette."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    image.quantize(colors=colors).save(path, optimize=True)
    return path


def _exactly(text: str):
    import re

    return re.compile(rf"^\s*{re.escape(text)}\s*$")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item (``app_page`` screenshots a page whose test failed)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture()
def app_page(browser, app_server, request) -> Callable[..., AppPage]:
    """``app_page(delegation=False)``: an :class:`AppPage` on the App server with that setting, in a fresh
    browser context (no state shared between tests). Finding an element waits at most
    ``ELEMENT_TIMEOUT_S``; only runs wait longer (``wait_for_output``). A failed test leaves a screenshot of
    each page beside the server's log."""
    pages: list[AppPage] = []

    def make(delegation: bool = False, viewport: tuple[int, int] = (1400, 900)) -> AppPage:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        context.set_default_timeout(ELEMENT_TIMEOUT_S * 1000)
        context.add_init_script(RETURNING_USER)
        context.add_init_script(NO_ANIMATIONS)
        page = context.new_page()
        app = AppPage(page, app_server(delegation))
        app.watch_forms()
        pages.append(app)
        page.on("console", lambda m: app.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        return app

    yield make
    failed = getattr(request.node, "report_call", None) is not None and request.node.report_call.failed
    for index, app in enumerate(pages):
        if failed:
            shot = app.server.log.with_name(f"failed-{request.node.name}-{index}.png")
            try:
                app.page.screenshot(path=str(shot))
                print(f"screenshot of the failed page: {shot}")
            except Exception:  # the page may be gone
                pass
        app.page.context.close()
