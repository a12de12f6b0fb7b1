"""The widgets in JupyterLab (issue 16): a real JupyterLab on loopback runs the widgets notebook in headless Chromium;
the avatar's frame and the controls show. Its screenshot is kept in out/screenshots for a person to look at."""
import json, os, re, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from browser import Browser

NBS = Path(__file__).resolve().parents[1]/"nbs"
SCREENSHOTS = Path(__file__).resolve().parents[1]/"out"/"screenshots"
TOKEN = "lab-test-token"

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def widgets_notebook(folder:Path) -> Path:
    "The widgets notebook as a user opens it: without nbdev's export cell and without the clean-up that ends it."
    nb = json.loads((NBS/"50_widgets.ipynb").read_text())
    nb["cells"] = [c for c in nb["cells"] if "nbdev_export" not in "".join(c["source"]) and "rmtree" not in "".join(c["source"])]
    path = folder/"widgets.ipynb"; path.write_text(json.dumps(nb))
    return path

@pytest.fixture
def lab(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           *(["--allow-root"] if os.geteuid() == 0 else [])]                 # CI's containers run as root
    settings = tmp_path/".jupyter"/"lab"/"user-settings"/"@jupyterlab"/"apputils-extension"
    settings.mkdir(parents=True)                                           # no "news?" pop-up over the notebook
    (settings/"notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path/".jupyter"), "MPLBACKEND": "Agg",
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path/".jupyter"/"lab"/"user-settings")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path/"lab.log", "w"))
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 90
    while True:
        try: urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2); break
        except OSError:
            assert proc.poll() is None and time.time() < deadline, (tmp_path/"lab.log").read_text()[-3000:]
            time.sleep(0.5)
    yield url
    proc.terminate()
    try: proc.wait(20)
    except subprocess.TimeoutExpired: proc.kill()

NOTEBOOK = "jupyterapp.shell.currentWidget"

def test_widgets_notebook_runs_in_jupyterlab_and_shows_the_avatar_and_controls(lab, tmp_path):
    widgets_notebook(tmp_path)
    b = Browser(f"{lab}/lab/tree/widgets.ipynb?token={TOKEN}", tmp_path, size=(1400, 1000))
    try:
        def until(expression, timeout, what):
            deadline = time.time() + timeout
            while not b.value(expression):
                assert time.time() < deadline, f"{what}: timed out"
                time.sleep(0.5)
        until(f"!!(window.jupyterapp && {NOTEBOOK} && {NOTEBOOK}.sessionContext && "
              f"{NOTEBOOK}.sessionContext.session?.kernel?.status === 'idle')", 120, "the notebook and its kernel")
        b.value(f"jupyterapp.commands.execute('notebook:run-all-cells')")
        cells = f"{NOTEBOOK}.content.widgets.filter(c => c.model.type === 'code')"
        until(f"{cells}.every(c => c.model.executionCount !== null) && "
              f"{NOTEBOOK}.sessionContext.session.kernel.status === 'idle'", 600, "running the notebook")
        errors = b.value(f"JSON.stringify({cells}.flatMap(c => c.model.outputs.toJSON()).filter(o => o.output_type === 'error'))")
        assert errors == "[]", errors
        # the preview's cell: its image holds a rendered frame, and its sliders are there
        index = b.value(f"{NOTEBOOK}.content.widgets.findIndex(c => c.model.sharedModel.source.startsWith('preview = AvatarPreview('))")
        assert index >= 0
        b.value(f"{NOTEBOOK}.content.activeCellIndex = {index}; {NOTEBOOK}.content.scrollToItem({index}, 'start')")
        until("[...document.querySelectorAll('img.widget-image')].some(i => i.naturalWidth > 0 && i.getBoundingClientRect().top >= 0)",
              30, "an avatar frame in the page")
        shown = b.value("JSON.stringify({frames: [...document.querySelectorAll('img.widget-image')].filter(i => i.naturalWidth > 0).length, "
                        "sliders: document.querySelectorAll('.widget-slider').length, "
                        "speak: [...document.querySelectorAll('button')].some(x => x.textContent.includes('Speak'))})")
        shown = json.loads(shown)
        assert shown["frames"] >= 1 and shown["sliders"] >= 10 and shown["speak"], shown
        b.value("document.querySelector('img.widget-image').closest('.jp-OutputArea-output').scrollIntoView()")
        time.sleep(1)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        b.screenshot(SCREENSHOTS/"jupyterlab_widgets.png")
    finally: b.close()
