"""The HTML viewer in headless Chromium, driven over the DevTools protocol (a stdlib websocket client).

The test loads the page, clicks a node with a real mouse event at the node's
position (the same path as a user's click), reads the details panel, zooms
with the wheel, pans by dragging, and saves a screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

import pytest
from paths import MODELS

from graphc.program import check_file
from graphc.viz import viz

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")]


class DevTools:
    """A minimal client of one page's DevTools websocket: send a command, wait for its answer."""

    def __init__(self, ws_url: str):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += self.sock.recv(4096)
        assert b" 101 " in reply.split(b"\r\n")[0], reply
        self.buffer = reply.split(b"\r\n\r\n", 1)[1]
        self.next_id = 0

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "DevTools closed the connection"
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _frame(self) -> tuple[int, bytes]:
        head = self._read(2)
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", self._read(8))[0]
        return opcode, self._read(length)

    def call(self, method: str, **params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                                (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else
                                 bytes([0x80 | 127]) + struct.pack(">Q", n)))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        message = b""
        while True:                       # skip events; gather fragments until our answer is complete
            opcode, data = self._frame()
            message += data
            if opcode == 0:               # a continuation frame: more of the same message follows
                continue
            reply = json.loads(message)
            message = b""
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, **extra):
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)


@pytest.fixture
def page(tmp_path):
    out = tmp_path / "lenet.html"
    viz(check_file(MODELS / "lenet5.nn"), out, backward=True, numbered=True)
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--no-first-run", "--no-default-browser-check", "--window-size=1200,800",
                             f"--user-data-dir={profile}", "--remote-debugging-port=0", out.as_uri()],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "Chromium did not start DevTools"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        while True:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
            pages = [t for t in targets if t.get("type") == "page" and t["url"].startswith("file:")]
            if pages:
                break
            assert time.monotonic() < deadline, targets
            time.sleep(0.05)
        tools = DevTools(pages[0]["webSocketDebuggerUrl"])
        while not tools.js("document.readyState === 'complete' && !!window.graphc"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _centre(page, selector: str) -> tuple[float, float]:
    r = page.js(f"(function(){{var r=document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                "return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height];})()")
    assert r[2] > 5 and r[3] > 5, r
    return r[0], r[1]


def test_click_a_node_shows_its_details(page, tmp_path):
    assert page.js("document.querySelectorAll('g.node').length") == 26     # 14 ops, 10 parameters, image, digit
    x, y = _centre(page, 'g.node[data-id="c3.conv"] rect')
    page.mouse("mouseMoved", x, y)
    page.mouse("mousePressed", x, y, button="left", clickCount=1)
    page.mouse("mouseReleased", x, y, button="left", clickCount=1)
    text = page.js("document.getElementById('panel').innerText")
    assert "c3.conv" in text and "[16, 10, 10]" in text
    assert "fused conv" in text                        # the rule of its backward step
    assert "c3.weight" in text and "2,400" in text     # its parameters
    assert "lenet5.nn:" in text and "conv(s2, 16, kernel=5)" in text   # its source line
    assert page.js("document.querySelector('g.node.selected').dataset.id") == "c3.conv"

    before = page.js("document.getElementById('viewport').getAttribute('transform')")
    page.mouse("mouseWheel", x, y, deltaX=0, deltaY=-300)
    zoomed = page.js("document.getElementById('viewport').getAttribute('transform')")
    assert zoomed != before and page.js("window.graphc.transform.k") > 1.0

    x, y = page.js("(function(){var r=document.getElementById('canvas').getBoundingClientRect();"
                   "return [r.left + 15, r.bottom - 15];})()")          # a corner: empty canvas
    page.mouse("mouseMoved", x, y)
    page.mouse("mousePressed", x, y, button="left", clickCount=1)
    page.mouse("mouseMoved", x + 20, y - 20, button="left", buttons=1)
    page.mouse("mouseMoved", x + 60, y - 90, button="left", buttons=1)
    page.mouse("mouseReleased", x + 60, y - 90, button="left", clickCount=1)
    panned = page.js("document.getElementById('viewport').getAttribute('transform')")
    assert panned != zoomed
    assert page.js("document.getElementById('panel').dataset.node") == "c3.conv"   # a drag is not a click

    shot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "viewer.png").write_bytes(shot)
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 10_000
