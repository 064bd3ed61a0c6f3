"""Headless Chromium (Debian's `chromium`) over the DevTools protocol: load a page, inspect it, shoot it.

`Chromium` starts one browser for a session (fresh profile, no network services, 127.0.0.1 debugging port
chosen by the browser) and stops it by PID. `Chromium.inspect(url, path)` loads the page at one screen
width, waits for it (images included), runs `PAGE_CHECKS` in it and saves a full-page PNG screenshot.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import requests

SCREEN = {"width": 1280, "height": 800}
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--disable-extensions", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]  # fmt: skip

# What a reader would see wrong, measured in the page: images that did not load, words of missing
# values, tables without rows or with blank cells, text boxes cut off, anything wider than the screen,
# lines that are only a file name, and figures on a white canvas with ink in their outermost pixel
# columns (matplotlib keeps a margin: ink at the very edge is a title or label cut off by the canvas).
PAGE_CHECKS = r"""
(async () => {
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  const describe = (el) => (el.getAttribute('alt') || el.textContent || el.tagName).trim().slice(0, 80);
  const images = [...document.images];
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  const broken = images.filter((img) => !img.complete || img.naturalWidth === 0).map(describe);
  const text = document.body.innerText;
  // a missing value printed as text: anywhere NaN / None / empty containers, in a table cell also null & co.
  const missingWord = /(^|[^\w.-])(NaN|nan|None|\[\]|\{\})(?![\w.-])/g;
  // ... and a Python object's default repr (`<module.Class object at 0x7f...>`) where a name was meant
  const objectRepr = /<[\w.]+ object at 0x[0-9a-f]+>/g;
  const missing = [...text.matchAll(missingWord), ...text.matchAll(objectRepr)]
    .map((m) => text.slice(Math.max(0, m.index - 40), m.index + 40).replace(/\s+/g, ' '));
  const tables = [...document.querySelectorAll('table')].filter(visible);
  const missingCell = /(^|[\s(])(null|undefined|-?inf|-?Infinity)([\s),]|$)/;
  missing.push(...tables.flatMap((t) => [...t.querySelectorAll('td')])
    .filter((td) => missingCell.test(td.textContent.trim())).map((td) => describe(td.closest('tr'))));
  const emptyTables = tables.filter((t) => t.querySelectorAll('td').length === 0)
    .map((t) => (t.previousElementSibling ? describe(t.previousElementSibling) : 'table'));
  const blankCells = tables.flatMap((t) => [...t.querySelectorAll('td')])
    .filter((td) => td.textContent.trim() === '' && td.querySelector('img, svg, canvas') === null)
    .map((td) => describe(td.closest('tr')));
  const width = window.innerWidth;
  const boxes = 'h1, h2, h3, h4, h5, h6, th, td, caption, figcaption, p, li, pre';
  const clipped = [...document.querySelectorAll(boxes)]
    .filter(visible)
    .filter((el) => el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible'
                    || el.getBoundingClientRect().left < 0 || el.getBoundingClientRect().right > width + 1)
    .map(describe);
  const fileNameLines = [...document.querySelectorAll('p, li, figcaption, div, span')]
    .filter(visible)
    .filter((el) => el.children.length === 0 && /^[\w.-]+\.(png|jpe?g|svg|html|json|csv|parquet)$/i
                    .test(el.textContent.trim()))
    .map(describe);
  const edgeInk = [];
  for (const img of images.filter((i) => i.naturalWidth > 0)) {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const inkIn = (x) => {
      const column = context.getImageData(x, 0, 1, canvas.height).data;
      for (let i = 0; i < column.length; i += 4) {
        const darkness = 765 - column[i] - column[i + 1] - column[i + 2];
        if (darkness > 120 && column[i + 3] > 0) return true;
      }
      return false;
    };
    // only figures drawn on a white canvas (white corners); a photo-like strip may fill its edges
    const [right, bottom] = [canvas.width - 1, canvas.height - 1];
    const corners = [[0, 0], [right, 0], [0, bottom], [right, bottom]];
    const pixel = (x, y) => [...context.getImageData(x, y, 1, 1).data.slice(0, 3)];
    const white = corners.every(([x, y]) => pixel(x, y).every((value) => value > 245));
    if (white && (inkIn(0) || inkIn(canvas.width - 1))) edgeInk.push(describe(img));
  }
  return {
    title: document.title,
    images: images.length,
    broken, missing, emptyTables, blankCells, clipped, fileNameLines, edgeInk,
    pageWidth: document.documentElement.scrollWidth, screenWidth: width,
    headings: [...document.querySelectorAll('h1, h2, h3')].map(describe),
    text: text.slice(0, 20000),
  };
})()
"""


class Chromium:
    """One headless browser; `inspect` each page, then `close` (also safe to call twice)."""

    def __init__(self, profile_dir: Path, executable: str | None = None):
        executable = executable or shutil.which("chromium") or "chromium"
        self.profile_dir = profile_dir
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile_dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        port_file = profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not open its DevTools port ({executable})")
            time.sleep(0.1)
        self.endpoint = f"http://127.0.0.1:{port_file.read_text().splitlines()[0]}"
        self._ids = itertools.count(1)

    def inspect(self, url: str, screenshot: Path, timeout_s: float = 60) -> dict:
        """Load `url` at SCREEN size; return PAGE_CHECKS' findings and write a full-page PNG."""
        import websocket

        target = requests.put(f"{self.endpoint}/json/new?about:blank", timeout=30).json()
        connection = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout_s)
        try:
            self._call(connection, "Page.enable")
            self._call(connection, "Emulation.setDeviceMetricsOverride",
                       {**SCREEN, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
            self._call(connection, "Page.navigate", {"url": url}, wait_event="Page.loadEventFired")
            found = self._call(
                connection, "Runtime.evaluate",
                {"expression": PAGE_CHECKS, "awaitPromise": True, "returnByValue": True},
            )  # fmt: skip
            if "exceptionDetails" in found:
                raise RuntimeError(f"page checks failed in {url}: {found['exceptionDetails']}")
            size = self._call(connection, "Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": SCREEN["width"], "height": size["height"], "scale": 1}
            shot = self._call(connection, "Page.captureScreenshot",
                              {"format": "png", "clip": clip, "captureBeyondViewport": True})  # fmt: skip
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            return found["result"]["value"]
        finally:
            connection.close()
            requests.get(f"{self.endpoint}/json/close/{target['id']}", timeout=30)

    def _call(
        self, connection, method: str, params: dict | None = None, wait_event: str | None = None
    ) -> dict:
        call_id = next(self._ids)
        connection.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        result, event_seen = None, wait_event is None
        while result is None or not event_seen:
            message = json.loads(connection.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result = message["result"]
            elif message.get("method") == wait_event:
                event_seen = True
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
