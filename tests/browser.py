"Headless Chromium driven through the DevTools protocol, for the tests of pages: the browser client and JupyterLab."
import json, shutil, subprocess, time, urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest
from websockets.sync.client import connect

def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None: pytest.fail("chromium is not installed (Debian package `chromium`; .ci/run installs it)")
    return path

class Browser:
    "Headless Chromium on `url` (fake microphone playing `wav`), driven through the DevTools protocol."
    def __init__(self, url, tmp_path, wav=None, size=(1366, 768)):     # a laptop screen; headless counts its bars
        profile = tmp_path/f"profile{time.monotonic_ns()}"
        cmd = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
               f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
               "--autoplay-policy=no-user-gesture-required", f"--window-size={size[0]},{size[1]}",
               *([f"--use-file-for-fake-audio-capture={wav}"] if wav else []), url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        active, deadline = profile/"DevToolsActivePort", time.time() + 30
        while not active.exists() or not active.read_text().strip():
            assert time.time() < deadline, "chromium did not start"
            time.sleep(0.2)
        self.port, self.ids = int(active.read_text().split()[0]), 0

    @contextmanager
    def session(self, timeout=10):
        "One DevTools session on the page (node ids live in one): yields `send(method, **params)` -> the reply message."
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=timeout))
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        with connect(url, max_size=None, open_timeout=timeout) as cdp:
            def send(method, **params):
                self.ids += 1
                cdp.send(json.dumps({"id": self.ids, "method": method, "params": params}))
                while (m := json.loads(cdp.recv(timeout=timeout))).get("id") != self.ids: pass
                return m
            yield send

    def call(self, method, params=None, timeout=10):
        with self.session(timeout) as send: return send(method, **(params or {}))["result"]

    def set_files(self, selector, paths):
        "Choose files in the page's file input `selector`, as a person would in the file dialog."
        with self.session() as send:
            def call(method, **params):
                m = send(method, **params)
                assert "error" not in m, m
                return m["result"]
            root = call("DOM.getDocument")["root"]["nodeId"]
            node = call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
            call("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])

    def value(self, expression):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get("value")

    def stats(self):
        s = self.value("window.beingStats && JSON.stringify(window.beingStats)")
        return json.loads(s) if s else {}

    def wait(self, check, timeout=60, what="the page"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.stats()
            if s and check(s): return s
            time.sleep(0.25)
        status = self.value("document.getElementById('status')?.textContent")
        raise AssertionError(f"{what}: timed out; stats {self.stats()}, status {status!r}")

    def screenshot(self, path):
        import base64
        path = Path(path); path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
        return path

    def close(self):
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill()
