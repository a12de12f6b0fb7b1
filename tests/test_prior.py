"""The speech prior as users run it: `being blendshapes` on real speech and silence, `being pretrain` with resume,
Ctrl-C and bad input, in separate processes."""
import csv, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
from conftest import AUDIO, shared_file
from being_nb.audio import load_audio_encoder
from being_nb.face import ARKIT_BLENDSHAPES, blendshape_index
from being_nb.media import write_wav
from being_nb.tts import synthesize

def being(*args, timeout=300, **kw):
    exe = shutil.which("being") or sys.exit("the `being` entry point is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, **kw)

def read_csv(path):
    rows = list(csv.reader(open(path)))
    return rows[0], np.array(rows[1:], np.float64)

def test_blendshapes_real_speech(tmp_path):
    wav = shared_file(AUDIO/"de_9s_48k24bit.wav")          # German, 48 kHz 24-bit stereo
    r = being("blendshapes", str(wav), "--output", str(tmp_path/"de.csv"), "--fps", "30")
    assert r.returncode == 0, r.stderr
    header, data = read_csv(tmp_path/"de.csv")
    assert header == ["timestamp", *ARKIT_BLENDSHAPES]
    assert abs(len(data) - 9.3*30) < 3 and np.allclose(np.diff(data[:, 0]), 1/30, atol=1e-5)
    weights = data[:, 1:]
    assert weights.min() >= 0 and weights.max() <= 1 and (weights[:, blendshape_index("tongueOut")] == 0).all()
    assert weights[:, blendshape_index("jawOpen")].std() > 0.005       # the mouth moves with the speech

def test_blendshapes_stream_to_unreal_and_osc(tmp_path):
    "`being blendshapes --livelink --osc --realtime`: a Live Link socket and an OSC server get the file's frames."
    import socket, threading
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import BlockingOSCUDPServer
    from being_nb.streams import parse_livelink
    write_wav(tmp_path/"hello.wav", synthesize("Hello from the other side.").audio)
    unreal = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); unreal.bind(("127.0.0.1", 0)); unreal.settimeout(60)
    osc = []
    dispatcher = Dispatcher(); dispatcher.map("/being/blendshapes", lambda address, *values: osc.append(values))
    server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    r = being("blendshapes", str(tmp_path/"hello.wav"), "--output", str(tmp_path/"hello.csv"), "--fps", "60", "--realtime",
              "--livelink", f"127.0.0.1:{unreal.getsockname()[1]}", "--osc", f"127.0.0.1:{server.server_address[1]}",
              "--subject", "MetaHuman")
    assert r.returncode == 0, r.stderr
    _, data = read_csv(tmp_path/"hello.csv")
    frames = [parse_livelink(unreal.recv(4096)) for _ in range(len(data))]
    time.sleep(0.5); server.shutdown(); unreal.close()
    assert [f.frame for f in frames] == list(range(len(data))) and {(f.subject, f.fps) for f in frames} == {("MetaHuman", 60)}
    assert np.abs(np.stack([f.weights for f in frames]) - data[:, 1:]).max() < 1e-4     # the CSV keeps 4 digits
    assert np.abs(np.array(osc) - data[:, 1:]).max() < 1e-4
    assert data[:, 1 + blendshape_index("jawOpen")].std() > 0.005       # the mouth moves with the speech
    assert f"sent {len(data)} frames" in r.stdout
    r = being("blendshapes", str(tmp_path/"hello.wav"), "--osc", "localhost:osc")
    assert r.returncode == 2 and "--osc takes HOST or HOST:PORT" in r.stderr

def test_export_prior_runs_in_onnxruntime_and_torchscript(tmp_path):
    "`being export-prior`: the files give `being blendshapes`' weights from the same mel windows."
    import onnxruntime
    from being_nb.prior import find_prior, speech_weights, window_index
    speech = synthesize("Papa made a big map of the moon.").audio
    mel = load_audio_encoder("mel")
    feats = mel(speech)
    prior = find_prior(None, "cpu", "streaming")
    n = len(feats)//2
    windows = feats[window_index(np.arange(n), len(feats), prior.config.window, prior.config.ahead)]
    expected = speech_weights(prior, mel, speech)[:n]
    for fmt, name in (("onnx", "prior.onnx"), ("torchscript", "prior.ts")):
        r = being("export-prior", "--output", str(tmp_path/name), "--format", fmt)
        assert r.returncode == 0 and f"wrote {tmp_path/name}" in r.stdout and not r.stderr.strip(), r.stderr
    got = onnxruntime.InferenceSession(str(tmp_path/"prior.onnx")).run(None, {"windows": windows})[0]
    assert np.abs(got - expected).max() <= 1e-4
    with torch.no_grad(): got = torch.jit.load(str(tmp_path/"prior.ts"))(torch.from_numpy(windows)).numpy()
    assert np.abs(got - expected).max() <= 1e-4

@pytest.mark.parametrize("timing", ["centred", pytest.param("streaming", marks=pytest.mark.xfail(
    strict=True, reason="the shipped 80 ms prior gives jawOpen 0.102 in digital silence (bench/prior.md; issue 10 open)"))])
def test_blendshapes_silence_keeps_the_mouth_closed(tmp_path, timing):
    write_wav(tmp_path/"quiet.wav", np.zeros(3*16000, np.float32))
    r = being("blendshapes", str(tmp_path/"quiet.wav"), "--output", str(tmp_path/"q.jsonl"), "--timing", timing)
    assert r.returncode == 0, r.stderr
    frames = [json.loads(l) for l in open(tmp_path/"q.jsonl")]
    assert len(frames) == 90
    assert max(f["blendshapes"][blendshape_index("jawOpen")] for f in frames) < 0.1

def fake_avatar(root, name, text, seed):
    "A prepared-looking avatar folder: real mel features of synthetic speech, a jawOpen that follows its loudness."
    folder = root/name
    (folder/"features").mkdir(parents=True)
    audio = synthesize(text).audio
    feats = load_audio_encoder("mel")(audio)
    n = len(feats)//2
    loud = feats[:2*n].mean(1).reshape(n, 2).mean(1)
    names = ["_neutral"] + [b for b in ARKIT_BLENDSHAPES if b != "tongueOut"]
    scores = np.zeros((n, len(names)), np.float32)
    scores[:, names.index("jawOpen")] = np.clip(0.05 + 0.05*seed*(loud - loud.mean()), 0, 1)
    np.save(folder/"features"/"mel.npy", feats)
    np.savez(folder/"track.npz", blendshapes=scores, blendshape_names=np.array(names), filled=np.zeros(n, bool))
    return folder

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("avatars")
    for k, text in enumerate(["Papa made a big map for the boat.", "We saw the sea and the sun all day.",
                              "Open the window, it is warm in here."]):
        fake_avatar(root, f"p{k}", text, k + 1)
    return root

def test_pretrain_resume_and_interrupt(tmp_path, corpus):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["pretrain", "p0", "p1", "p2", "--root", str(corpus), "--hold-out", "p2", "--output", str(tmp_path/"out"), "--batch", "16"]
    r = being(*args, "--steps", "30", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/"out"/"prior.pt").exists() and (tmp_path/"out"/"held_out.json").exists()
    r = being(*args, "--steps", "50", "--resume", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    card = torch.load(tmp_path/"out"/"prior.pt", weights_only=True)["card"]
    assert card["steps"] == 50 and card["held_out"] == ["p2"] and card["trained_on"] == ["p0", "p1"]
    # Ctrl-C mid-run: a checkpoint is saved and --resume continues from it
    exe = shutil.which("being")
    p = subprocess.Popen([exe, *args, "--steps", "100000", "--resume", "--quiet"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    log, deadline = tmp_path/"out"/"metrics.jsonl", time.time() + 300
    while time.time() < deadline and not any(json.loads(l)["step"] > 250 for l in log.read_text().splitlines()):
        time.sleep(0.2)                                  # until it has trained past the last run's 50 steps
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err[-1000:]
    assert "continue with --resume" in err
    step = torch.load(tmp_path/"out"/"checkpoint.pt", weights_only=False)["step"]
    assert step > 50

@pytest.mark.parametrize("args,message", [
    (["nobody"], "not a prepared avatar"),
    (["p0", "--features", "whisper-tiny.en-encoder"], "no 'whisper-tiny.en-encoder' features"),
    (["p0", "--hold-out", "p9"], "--hold-out names avatars not given"),
    (["p0", "--resume"], "nothing to resume"),
])
def test_pretrain_bad_input(tmp_path, corpus, args, message):
    r = being("pretrain", *args, "--root", str(corpus), "--output", str(tmp_path/"o"), "--steps", "5")
    assert r.returncode == 2 and message in r.stderr, r.stderr

def test_pretrain_track_without_blendshapes(tmp_path, corpus):
    shutil.copytree(corpus/"p0", tmp_path/"avatars"/"old")
    np.savez(tmp_path/"avatars"/"old"/"track.npz", landmarks=np.zeros((3, 478, 3)))
    r = being("pretrain", "old", "--root", str(tmp_path/"avatars"), "--output", str(tmp_path/"o"), "--steps", "5")
    assert r.returncode == 2 and "no blendshapes" in r.stderr and "track.npz" in r.stderr, r.stderr

@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    from being_nb.prepare import prepare
    from being_nb.sample import sample_clip
    root = tmp_path_factory.mktemp("bs_avatars")
    prepare(sample_clip().path, "s", root=root, size=96, audio_encoder="mel")
    return root

def test_blendshape_driven_avatar(tmp_path, sample_root):
    "`being train --prior`: trained on tracked shapes, evaluated against the oracle, driven by speech through the prior."
    from being_nb.media import probe
    r = being("train", "s", "--root", str(sample_root), "--device", "cpu", "--iterations", "60", "--size", "32", "--prior", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((sample_root/"s"/"model"/"config.json").read_text())["model"]
    assert (cfg["drive"], cfg["features"], cfg["feature_dim"], cfg["prior_ahead"]) == ("blendshapes", "mel", 27, 4)
    r = being("eval", "s", "--root", str(sample_root), "--device", "cpu", "--no-video", "--no-lip")
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((sample_root/"s"/"model"/"metrics.json").read_text())
    assert {"model", "oracle", "silent", "nearest_neighbour"} <= set(m) and m["drive"] == "blendshapes"
    assert "prior.pt" in m["prior"]
    write_wav(tmp_path/"say.wav", synthesize("Papa made a map.").audio)
    r = being("generate", "s", "--root", str(sample_root), "--device", "cpu", "--audio", str(tmp_path/"say.wav"),
              "--output", str(tmp_path/"say.mp4"))
    assert r.returncode == 0, r.stderr[-2000:]
    # puppeteered by a blendshape track alone (a 2 s CSV at 30 fps): the track's length, and its jaw moves the picture
    from being_nb.blendshapes import write_blendshapes
    from being_nb.media import read_frames
    jaw = np.zeros((50, 52), np.float32)
    jaw[:, blendshape_index("jawOpen")] = 0.5 + 0.5*np.sin(np.arange(50)/3)
    for name, track in (("still", np.zeros_like(jaw)), ("jaw", jaw)):
        write_blendshapes(tmp_path/f"{name}.csv", track, fps=30)
        r = being("generate", "s", "--root", str(sample_root), "--device", "cpu", "--blendshapes", str(tmp_path/f"{name}.csv"),
                  "--output", str(tmp_path/f"{name}.mp4"))
        assert r.returncode == 0, r.stderr[-2000:]
    still, moved = (np.stack(list(read_frames(tmp_path/f"{n}.mp4"))).astype(np.float32) for n in ("still", "jaw"))
    assert len(still) == len(moved) == 50 and probe(tmp_path/"jaw.mp4").frame_count() == 50
    assert np.abs(moved - still).mean() > 0.05
    info = probe(tmp_path/"say.mp4")
    assert abs(info.duration - len(synthesize("Papa made a map.").audio)/16000) < 0.1

def test_blendshape_driven_avatar_served_live(sample_root):
    "`being serve` drives a blendshape-driven avatar through the prior: 80 ms look-ahead, one frame per 40 ms of audio."
    import re, json as js
    from websockets.sync.client import connect
    from being_nb.serve.protocol import SPEAKING, IDLE, pack_audio, parse_frame
    if not (sample_root/"s"/"model"/"model.pt").exists(): pytest.skip("needs test_blendshape_driven_avatar's model")
    proc = subprocess.Popen([shutil.which("being"), "serve", "--root", str(sample_root), "--port", "0", "--device", "cpu",
                             "--shed-after-ms", "600000"],           # every frame, however late (what is counted here)
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline()).group(1))
        with connect(f"ws://127.0.0.1:{port}/ws/s", open_timeout=10) as ws:
            ws.send(js.dumps({"type": "hello", "v": 1, "sample_rate": 16000, "fps": 25, "format": "pcm_s16le"}))
            ready = js.loads(ws.recv(timeout=120))
            assert ready["type"] == "ready" and 80 <= ready["lookahead_ms"] < 90, ready     # the prior's 80 ms + mel's 2.5
            audio = synthesize("Papa made a map.").audio[:16000]
            audio = np.pad(audio, (0, 16000 - len(audio)))
            for k, i in enumerate(range(0, 16000, 320)): ws.send(pack_audio(audio[i:i + 320], k, i))
            ws.send(js.dumps({"type": "end"}))
            speaking, ended, deadline = [], None, time.time() + 60
            while ended is None and time.time() < deadline:
                m = ws.recv(timeout=max(0.01, deadline - time.time()))
                if isinstance(m, str):
                    if js.loads(m)["type"] == "ended": ended = js.loads(m)
                    continue
                f = parse_frame(m); ws.send(js.dumps({"type": "ack", "seq": f["seq"]}))
                if f["flags"] == SPEAKING: speaking.append(f)
            assert ended and ended["frames"] == 25 and [f["pts"] for f in speaking] == [640*k for k in range(25)]
    finally:
        proc.send_signal(signal.SIGTERM)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()

def test_a_face_moves_the_mouth_of_a_session_that_asks(sample_root):
    """hello `"mouth": "face"`: the jaw and mouth of `face` messages move a blendshape-driven avatar's mouth instead of
    the speech prior's. Two sessions get the same face (jaw open, eyes and brows at rest); only the one that asked
    shows it: their k-th frames replay the same clip frame, equal before the face and different after."""
    import re, json as js
    from websockets.sync.client import connect
    from being_nb.media import decode_jpeg
    from being_nb.serve.protocol import parse_frame
    if not (sample_root/"s"/"model"/"model.pt").exists(): pytest.skip("needs test_blendshape_driven_avatar's model")
    proc = subprocess.Popen([shutil.which("being"), "serve", "--root", str(sample_root), "--port", "0", "--device", "cpu",
                             "--no-admission"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline()).group(1))
        hello = {"type": "hello", "v": 1, "sample_rate": 16000, "fps": 25, "format": "pcm_s16le"}
        a, b = (connect(f"ws://127.0.0.1:{port}/ws/s", open_timeout=10) for _ in range(2))
        a.send(js.dumps({**hello, "mouth": "face"})); b.send(js.dumps(hello))
        assert js.loads(a.recv(timeout=120))["mouth"] == "face" and js.loads(b.recv(timeout=120))["type"] == "ready"
        got = {a: [], b: []}
        def take(ws):
            while True:
                m = ws.recv(timeout=30)
                if isinstance(m, bytes):
                    f = parse_frame(m); ws.send(js.dumps({"type": "ack", "seq": f["seq"]}))
                    got[ws].append(decode_jpeg(f["jpeg"]).astype(np.float32)); return
        face = [0.0]*52
        face[blendshape_index("jawOpen")] = 1.0
        for k in range(30):
            take(a); take(b)
            if k == 5:
                for ws in (a, b): ws.send(js.dumps({"type": "face", "blendshapes": face}))
        diff = [float(np.abs(got[a][k] - got[b][k]).mean()) for k in range(30)]
        print("mean |A - B| per frame:", np.round(diff, 3).tolist())
        assert max(diff[:4]) < 0.05 and min(diff[15:]) > 0.05, diff
        a.close(); b.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()

def test_adapted_prior_drives_its_avatar(sample_root):
    "`being train --prior --timing centred` adapts a copy of the prior to the person; eval and generate use that copy."
    import torch
    shutil.copytree(sample_root/"s", sample_root/"a", ignore=shutil.ignore_patterns("model"))
    r = being("train", "a", "--root", str(sample_root), "--device", "cpu", "--iterations", "20", "--size", "32", "--prior",
              "--timing", "centred", "--adapt-steps", "30", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    card = torch.load(sample_root/"a"/"model"/"prior.pt", weights_only=True)["card"]
    assert card["adapted_to"] == "a" and card["adapt"]["steps"] == 30
    r = being("eval", "a", "--root", str(sample_root), "--device", "cpu", "--no-video", "--no-lip", "--no-fps")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "adapted to a" in json.loads((sample_root/"a"/"model"/"metrics.json").read_text())["prior"]
