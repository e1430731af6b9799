"""Plumbing for tests/test_browser.py: a throwaway JupyterLab server, Chromium lookup, console watching.

Kept apart from the test so the test reads as what a learner does (open, Run All, move a slider) and this file
holds how (server flags, process-group shutdown, JupyterLab's front-end state read through ``window.jupyterapp``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_ENV = "RESNET_LAB_CHROMIUM"  # path of a Chromium-based browser; overrides the lookup below
REQUIRE_ENV = "RESNET_LAB_REQUIRE_BROWSER"  # "1": a missing browser or playwright fails instead of skipping
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",  # Chromium's sandbox refuses to start as root (CI containers)
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a 64 MB /dev/shm
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def find_chromium() -> str | None:
    """The browser to drive: ``$RESNET_LAB_CHROMIUM`` if set (None if that path does not exist), else Debian's."""
    override = os.environ.get(CHROMIUM_ENV)
    if override is not None:
        return override if Path(override).is_file() else None
    for candidate in CHROMIUM_CANDIDATES:
        found = candidate if Path(candidate).is_file() else shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` on 127.0.0.1 with a random port and token, serving ``root`` (a scratch copy of the notebooks).

    Every Jupyter directory (config, data, runtime, workspaces, user settings) and IPython's live under ``home``, so
    the learner's own settings and saved workspaces neither leak in nor get written. Kernels inherit
    ``RESNET_LAB_SMOKE=1``; ``MPLBACKEND`` (set to Agg for nbval by conftest.py) is removed so plots show inline as
    they do for a learner. The server's output goes to ``log_path``.
    """

    def __init__(self, root: Path, home: Path, log_path: Path) -> None:
        self.root, self.home, self.log_path = root, home, log_path
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.started_at = time.monotonic()

    def start(self, timeout: float = 90.0) -> None:
        config = self.home / "config"
        settings = config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        # No "get notified about Jupyter news?" toast over the notebook, and no news or update fetches.
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8"
        )
        env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
        env.update(
            RESNET_LAB_SMOKE="1",
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            IPYTHONDIR=str(self.home / "ipython"),
            PYTHONUNBUFFERED="1",
        )
        command = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the test reads cells and kernel state
        ]  # fmt: skip
        self.started_at = time.monotonic()
        log = self.log_path.open("wb")
        try:
            self.process = subprocess.Popen(
                command, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole in stop()
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.25)
        raise RuntimeError(f"jupyter lab did not answer {self.base_url}/api/status within {timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 10.0) -> object:
        request = urllib.request.Request(
            self.base_url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel (frees the torch processes' memory between notebooks on a small machine)."""
        try:
            for kernel in self.api("GET", "/api/kernels"):
                try:
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=30)
                except urllib.error.HTTPError:
                    pass  # already gone
        except OSError as error:  # the server is gone: stop() cleans up, and the test has already failed
            print(f"[browser] could not stop the kernels: {error}")

    def stop(self) -> None:
        """Shut the server and its kernels down, politely first, then by killing its process group."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                self.api("POST", "/api/shutdown", timeout=5)  # also shuts down the kernels
                process.wait(timeout=15)
            except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
                pass
        if hasattr(os, "killpg"):  # the whole group: the leader and anything it left behind
            for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 0)):
                try:
                    os.killpg(process.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break  # no process left in the group
                try:
                    process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
        elif process.poll() is None:
            process.kill()
        process.wait(timeout=10)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no server log)"


@dataclass
class AllowedConsoleError:
    """A console error that does not mean a broken notebook; ``why`` says what it is."""

    why: str
    text: str  # regex searched in the message text
    url: str = ""  # regex searched in the URL the message comes from ("" = any)

    def matches(self, text: str, url: str) -> bool:
        return bool(re.search(self.text, text)) and bool(re.search(self.url, url))


@dataclass
class ConsoleWatcher:
    """Collects a page's console errors and uncaught exceptions, minus an allow-list."""

    allowed: list[AllowedConsoleError]
    errors: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def attach(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught exception: {error}"))

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        entry = f"console error: {message.text} (at {url})"
        if any(allowed.matches(message.text, url) for allowed in self.allowed):
            self.ignored.append(entry)
        else:
            self.errors.append(entry)


# JavaScript run in the page. `window.jupyterapp` is the JupyterLab application (see --LabApp.expose_app_in_browser).
JS_NOTEBOOK_READY = """(path) => {
    const panel = window.jupyterapp?.shell.currentWidget;
    if (!panel || panel.context?.path !== path || !panel.context.isReady || !panel.content?.model) return false;
    const kernel = panel.sessionContext.session?.kernel;
    const rendered = panel.node.querySelectorAll('.jp-Notebook .jp-Cell').length;
    return kernel?.status === 'idle' && rendered === panel.content.model.cells.length;
}"""

JS_WATCH_EXECUTION = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const seen = window.__resnetLabExecution = {inputs: 0, errors: 0};
    panel.sessionContext.iopubMessage.connect((_, msg) => {
        if (msg.header.msg_type === 'execute_input') seen.inputs += 1;
        if (msg.header.msg_type === 'error') seen.errors += 1;
    });
}"""

# Run All is over when the kernel is idle and every non-empty code cell has started (execute_input) and finished
# (an execution count), or as soon as an error stops the queue (JupyterLab skips the cells after it).
JS_RUN_FINISHED = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const seen = window.__resnetLabExecution;
    if (panel.sessionContext.session?.kernel?.status !== 'idle') return false;
    const code = Array.from(panel.content.model.cells)
        .filter(cell => cell.type === 'code' && cell.sharedModel.getSource().trim());
    if (seen.errors > 0) return true;
    return seen.inputs >= code.length && code.every(cell => cell.executionCount !== null);
}"""

# What the notebook shows after a run: per code cell its count and error outputs; the DOM's tracebacks, widget
# placeholders and text fallbacks of widgets; plots.
JS_RUN_REPORT = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = Array.from(panel.content.model.cells);
    const code = cells.map((cell, index) => ({cell, index})).filter(({cell}) => cell.type === 'code');
    const outputs = panel.node.querySelectorAll('.jp-OutputArea-output');
    const text = Array.from(outputs).map(o => o.innerText).join('\\n');
    return {
        notRun: code.filter(({cell}) => cell.sharedModel.getSource().trim() && cell.executionCount === null)
            .map(({index}) => index),
        errors: code.flatMap(({cell, index}) => cell.outputs.toJSON().filter(o => o.output_type === 'error')
            .map(o => `cell ${index}: ${o.ename}: ${o.evalue}`)),
        tracebacks: Array.from(outputs)  // JupyterLab renders error outputs as stderr text
            .filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stderr')
            .map(o => o.innerText).filter(t => t.includes('Traceback (most recent call last)'))
            .map(t => t.slice(0, 500)),
        widgetOutputs: code.reduce((n, {cell}) => n + cell.outputs.toJSON()
            .filter(o => o.data && o.data['application/vnd.jupyter.widget-view+json']).length, 0),
        renderedWidgets: panel.node.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
        widgetProblems: ['Loading widget...', 'Error displaying widget', 'Box(children=', 'Slider(value=']
            .filter(s => text.includes(s)),
        images: panel.node.querySelectorAll('.jp-OutputArea-output img').length,
    };
}"""

JS_RENDER_REPORT = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const heading = panel.node.querySelector('.jp-MarkdownCell .jp-RenderedMarkdown h1');
    return {
        visible: panel.isVisible && panel.node.getBoundingClientRect().height > 0,
        cells: panel.node.querySelectorAll('.jp-Notebook .jp-Cell').length,
        modelCells: panel.content.model.cells.length,
        heading: heading ? heading.textContent.replace(/\\u00b6/g, '').trim() : null,
    };
}"""

JS_STATE = """() => {
    const panel = window.jupyterapp?.shell.currentWidget;
    if (!panel?.content?.model) return {panel: panel?.title?.label ?? null};
    const code = Array.from(panel.content.model.cells).filter(cell => cell.type === 'code');
    return {
        panel: panel.context.path,
        kernel: panel.sessionContext.session?.kernel?.status ?? null,
        codeCells: code.length,
        executed: code.filter(cell => cell.executionCount !== null).length,
        seen: window.__resnetLabExecution ?? null,
    };
}"""

JS_KERNEL_IDLE = "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'"
