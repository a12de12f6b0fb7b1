"The REST API of `being serve` (issue 15), against a real server in a subprocess: uploads, jobs, results, limits."
import json, re, shutil, signal, socket, subprocess, time
from pathlib import Path
import httpx
import pytest
import torch
from websockets.sync.client import connect

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

@pytest.fixture(scope="module")
def clip():
    from being_nb.sample import sample_clip
    return sample_clip().path

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("avatars")

class Server:
    "`being serve` with a token in a subprocess on a free port (CPU), its jobs run by its own worker."
    def __init__(self, root, *args):
        cmd = [shutil.which("being"), "serve", "--root", str(root), "--port", "0", "--device", "cpu", "--token", TOKEN, *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, f"no address in {line!r}: {self.proc.stderr.read() if self.proc.poll() is not None else ''}"
        self.port = int(m.group(1))
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=AUTH, timeout=60)

    def job(self, job_id, until=("done", "failed", "cancelled"), timeout=600, check=lambda j: False) -> dict:
        "Poll the job until its state is in `until` (or `check(job)` holds)."
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.api.get(f"/api/jobs/{job_id}").json()
            if j["state"] in until or check(j): return j
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} still {j['state']} ({j['stage']}, {j['progress']}) after {timeout} s")

    def new_avatar(self, name, clip, **fields) -> dict:
        with open(clip, "rb") as f:
            r = self.api.post("/api/avatars", data={"name": name, "size": "64", **fields}, files={"video": ("clip.mp4", f, "video/mp4")})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/api/jobs/{r.json()['job']['id']}"
        return r.json()["job"]

    def stop(self, sig=signal.SIGTERM):
        self.api.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try: self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired: self.proc.kill()

@pytest.fixture(scope="module")
def server(root):
    s = Server(root, "--max-upload-mb", "2")
    yield s
    s.stop()

def raw_post(port, path, headers:dict, body=b"", chunks=()) -> bytes:
    "An HTTP/1.1 POST by hand (the headers and as much body as given), and what the server answers first."
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"127.0.0.1:{port}", **headers}.items())
    s.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    try:
        for c in chunks: s.sendall(f"{len(c):x}\r\n".encode() + c + b"\r\n")
    except OSError: pass                               # the server stopped reading: that is the point
    answer = b""
    def complete():                                    # the head, and as much body as it declares
        head, sep, body = answer.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: *(\d+)", head, re.I)
        return sep and len(body) >= (int(m.group(1)) if m else 0)
    try:
        while not complete() and (got := s.recv(65536)): answer += got
    except OSError: pass
    s.close()
    return answer

def test_unauthenticated_calls_bad_files_and_large_uploads_are_refused(server, root, clip, tmp_path):
    anon = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=30)
    for method, path in [("POST", "/api/avatars"), ("POST", "/api/avatars/anna/generate"), ("DELETE", "/api/avatars/anna"),
                         ("DELETE", "/api/jobs/x"), ("GET", "/api/jobs/x/result"), ("GET", "/api/avatars")]:
        r = anon.request(method, path, files={"text": (None, "hi")} if method == "POST" else None)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (method, path, r.status_code)
    assert anon.post("/api/avatars", headers={"Authorization": "Bearer nope"}, files={"name": (None, "x")}).status_code == 401
    assert anon.post("/api/avatars", headers={**AUTH, "Origin": "https://evil.example"}, files={"name": (None, "x")}).status_code == 403

    notes = tmp_path/"notes.mp4"; notes.write_text("meeting notes, not a video\n"*20)
    with open(notes, "rb") as f:
        r = server.api.post("/api/avatars", data={"name": "anna"}, files={"video": ("notes.mp4", f, "video/mp4")})
    assert r.status_code == 415 and "'notes.mp4' is not a video file" in r.json()["detail"], r.text
    with open(clip, "rb") as f:
        r = server.api.post("/api/avatars", data={"name": "../etc"}, files={"video": ("clip.mp4", f, "video/mp4")})
    assert r.status_code == 400 and "invalid avatar name" in r.json()["detail"]

    # 413: a declared length over --max-upload-mb is answered before any of the body is sent...
    answer = raw_post(server.port, "/api/avatars", {**AUTH, "Content-Type": "multipart/form-data; boundary=x",
                                                     "Content-Length": str(50*2**20)})
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # ...and a chunked body with no length is cut when it passes the limit, the part already written deleted
    part = b'--x\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'
    answer = raw_post(server.port, "/api/avatars", {**AUTH, "Content-Type": "multipart/form-data; boundary=x",
                                                     "Transfer-Encoding": "chunked"}, chunks=[part] + [b"\0"*65536]*160)
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than this server takes (2 MB)" in answer, answer[:300]
    assert not any((root/".uploads").iterdir())                            # nothing of the refused uploads is kept
    assert server.api.get("/api/jobs").json()["jobs"] == []

def test_an_avatar_from_an_upload_then_videos_from_audio_and_text(server, root, clip):
    job = server.new_avatar("anna", clip, iterations="40")
    assert server.api.get("/api/avatars/anna").json()["state"] in ("queued", "running")
    with open(clip, "rb") as f:                                            # the name is taken while it is made
        assert server.api.post("/api/avatars", data={"name": "anna"}, files={"video": ("c.mp4", f)}).status_code == 409
    # both videos are asked for while the avatar is still being made: they wait behind it, one after the other
    from being_nb.media import read_audio, write_wav
    speech = write_wav(root.parent/"speech.wav", read_audio(clip)[:3*16000])          # 3 s of the clip's sound
    with open(speech, "rb") as f:
        spoken = server.api.post("/api/avatars/anna/generate", files={"audio": ("speech.wav", f, "audio/wav")})
    said = server.api.post("/api/avatars/anna/generate", files={"text": (None, "Hello from the service."), "size": (None, "64")})
    assert spoken.status_code == said.status_code == 202, (spoken.text, said.text)
    made = server.job(job["id"])
    assert made["state"] == "done", made
    assert server.api.get("/api/avatars/anna").json()["state"] == "ready"
    a, b = (server.job(r.json()["job"]["id"]) for r in (spoken, said))
    assert a["state"] == b["state"] == "done", (a, b)
    assert made["finished"] <= a["started"] and a["finished"] <= b["started"]        # one worker: one job at a time
    from being_nb.media import probe
    for j in (a, b):
        r = server.api.get(j["result"])
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        out = root.parent/f"{j['id']}.mp4"; out.write_bytes(r.content)
        info = probe(out)
        assert info.has_video and info.has_audio and info.duration > 0.5, info
    deadline = time.time() + 10                                            # uploads go when their jobs end (the worker
    while any((root/".uploads").iterdir()) and time.time() < deadline: time.sleep(0.2)    # sees its child exit)
    assert not any((root/".uploads").iterdir()), list((root/".uploads").iterdir())
    # the live stream of the new avatar, at its REST address
    with connect(f"ws://127.0.0.1:{server.port}/api/avatars/anna/stream?token={TOKEN}", open_timeout=30) as ws:
        ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate": 16000, "fps": 25, "format": "pcm_s16le"}))
        assert json.loads(ws.recv(timeout=60))["type"] == "ready"
        assert isinstance(ws.recv(timeout=30), bytes)                      # an idle frame
        assert server.api.delete("/api/avatars/anna").status_code == 409   # streamed: not deleted under its session
    assert server.api.delete("/api/avatars/anna").status_code == 200
    assert server.api.get("/api/avatars/anna").status_code == 404 and not (root/"anna").exists()

def test_a_killed_server_resumes_its_training_job_and_cancel_works(tmp_path, clip):
    root = tmp_path/"avatars"                     # its own root: the module's server would take its jobs (a shared queue)
    s = Server(root)
    try:
        job = s.new_avatar("ben", clip, iterations="400")
        # past step 100, the CPU's first periodic checkpoint (progress: 0.2 for prepare, then 0.8 for 400 steps)
        s.job(job["id"], check=lambda j: j["stage"].startswith("training") and 0.45 < j["progress"] < 0.75)
    finally: s.stop(signal.SIGKILL)                                        # no clean shutdown: its job's process goes too
    time.sleep(3)
    saved = torch.load(root/"ben"/"model"/"latest.pt", weights_only=True)["step"]
    assert 100 < saved < 400, saved             # saved when the server died (not only the periodic one at step 100)
    s = Server(root)
    try:
        done = s.job(job["id"])
        assert (done["state"], done["attempts"]) == ("done", 2), done
        log = [json.loads(l) for l in (root/"ben"/"model"/"metrics.jsonl").read_text().splitlines()]
        assert log[-1]["step"] == 400
        assert s.api.get("/api/avatars/ben").json()["state"] == "ready"
        # cancel: a running avatar job stops within seconds, and its half-made avatar is removed
        job = s.new_avatar("cleo", clip, iterations="100000")
        s.job(job["id"], check=lambda j: j["stage"].startswith("training"))
        t = time.time()
        assert s.api.delete(f"/api/jobs/{job['id']}").status_code == 200
        assert s.job(job["id"], timeout=60)["state"] == "cancelled" and time.time() - t < 15
        assert s.api.get("/api/avatars/cleo").json()["state"] == "cancelled" and not (root/"cleo").exists()
        r = s.api.get(f"/api/jobs/{job['id']}/result")
        assert r.status_code == 404                                        # an avatar job has no mp4
    finally: s.stop()

def test_slow_clients_are_cut_and_concurrent_uploads_share_the_disk(tmp_path):
    "A connection slow to send a request's head, or an upload that pauses, gets 408; uploads under way hold their disk room."
    root = tmp_path/"avatars"; root.mkdir()
    mb = 2**20
    free = shutil.disk_usage(root).free
    min_free_gb = (free - 2**30 - 300*mb)/2**30            # room for one 200 MB upload (and 1 GB for its avatar), not two
    s = Server(root, "--request-timeout", "2", "--no-jobs", "--min-free-gb", f"{min_free_gb:.6f}")
    try:
        def answer_of(sock, timeout=10):
            sock.settimeout(timeout); got, t0 = b"", time.time()
            try:
                while (d := sock.recv(65536)): got += d
            except OSError: pass
            return got, time.time() - t0
        for first in (b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "):   # silent, and a head that never ends
            sock = socket.create_connection(("127.0.0.1", s.port)); sock.sendall(first)
            got, waited = answer_of(sock)
            assert got.startswith(b"HTTP/1.1 408") and 1.5 < waited < 6, (got, waited)
        head = lambda: {**AUTH, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(200*mb)}
        a = socket.create_connection(("127.0.0.1", s.port))     # upload A: declared 200 MB, a first part of it sent
        a.sendall(f"POST /api/avatars HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                  + "".join(f"{k}: {v}\r\n" for k, v in head().items()).encode() + b"\r\n"
                  + b'--x\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\n' + b"\0"*mb)
        time.sleep(0.5)
        b = raw_post(s.port, "/api/avatars", head())           # B, while A arrives: no room for both
        assert b.startswith(b"HTTP/1.1 507") and b"held for uploads under way" in b, b[:400]
        got, _ = answer_of(a)                                   # A pauses: 408 after 2 s, its part deleted
        assert got.startswith(b"HTTP/1.1 408") and b"the upload paused for more than 2 s" in got, got[:400]
        b = raw_post(s.port, "/api/avatars", head())           # the room A held is free again: B is taken (then pauses)
        assert b.startswith(b"HTTP/1.1 408"), b[:400]
        c = socket.create_connection(("127.0.0.1", s.port))     # C never pauses 2 s, but drips a byte at a time
        c.sendall(f"POST /api/avatars HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                  + "".join(f"{k}: {v}\r\n" for k, v in head().items()).encode() + b"\r\n"
                  + b'--x\r\nContent-Disposition: form-data; name="video"; filename="c.mp4"\r\n\r\n')
        t0, got = time.time(), b""
        c.settimeout(0.5)
        while time.time() - t0 < 10 and not got:
            try: c.sendall(b"\0"); got = c.recv(65536)
            except socket.timeout: pass
            except OSError: break
        waited = time.time() - t0
        rest, _ = answer_of(c, timeout=5)
        got += rest
        assert got.startswith(b"HTTP/1.1 408") and b"KB/s" in got and waited < 6, (got[:300], waited)
        assert not any((root/".uploads").iterdir())
        assert s.api.get("/healthz").status_code == 200                          # the server is fine
    finally: s.stop()
