"""A page opened in a real headless browser (Debian's chromium), driven over the DevTools
protocol: every request the page makes, every script error and console error, its drawn
charts, and a screenshot.

The page's own requests are told apart from the browser's background calls by the protocol
(Network.requestWillBeSent of the page's target), so a report that fetched a script or a font
from anywhere but its own server shows up, by address, even on a machine with no network.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.sync.client import connect

# Headless as root here: no sandbox, no GPU, no background calls of the browser's own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,2400",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]


@dataclass
class Rendered:
    screenshot: Path
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    errors: list[str] = field(default_factory=list)  # exceptions, console and log errors
    charts: int = 0  # plotly charts drawn
    widgets: int = 0  # Evidently's per-column drift widgets ("Drift in column ...")


class DevTools:
    """The page target of a running chromium, over its DevTools websocket."""

    def __init__(self, websocket_url: str) -> None:
        self.socket = connect(websocket_url, max_size=None, open_timeout=30)
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        call_id = next(self.ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(json.loads(self.socket.recv(timeout=deadline - time.monotonic())))

    def drain(self, seconds: float) -> None:
        """Keep collecting events for `seconds` (late scripts, late requests)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.socket.recv(timeout=left)))
            except TimeoutError:
                return


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(url: str, out: Path, settle_seconds: float = 3.0) -> Rendered:
    """Open `url`, wait for its load event and `settle_seconds` more, and report."""
    binary = chromium()
    assert binary, "chromium not found: `make test-containers` installs Debian's chromium"
    profile = out / "profile"
    shutil.rmtree(profile, ignore_errors=True)  # a fresh browser: no port file from the last
    browser = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=(out / "chromium.log").open("w"),
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert browser.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list").json()
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Network", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        tools.call("Page.navigate", url=url)
        tools.wait_for("Page.loadEventFired", timeout=120)
        tools.drain(settle_seconds)
        count = "document.querySelectorAll('{}').length"
        charts = tools.call("Runtime.evaluate", expression=count.format(".js-plotly-plot"))
        widgets = tools.call(
            "Runtime.evaluate",
            expression="document.body.innerText.split('Drift in column').length - 1",
        )
        shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        screenshot = out / "report.png"
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return Rendered(
            screenshot,
            _requests(tools.events),
            _errors(tools.events),
            charts["result"]["value"],
            widgets["result"]["value"],
        )
    finally:
        browser.terminate()
        browser.wait(timeout=30)


def _requests(events: list[dict]) -> list[str]:
    return [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
            errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            errors.append(f"request failed: {params.get('errorText')}")
    return errors
