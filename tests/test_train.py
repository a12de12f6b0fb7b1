"""`being train` and `being eval` as a user runs them: a tiny CPU avatar, Ctrl-C saves a checkpoint, --resume
finishes the run, eval writes metrics and a video."""
import json, shutil, signal, subprocess, time
import pytest
from being_nb.prepare import prepare
from being_nb.sample import sample_clip

@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("avatars")
    prepare(sample_clip().path, "s", root=root, size=96, audio_encoder="mel")
    return root

def being(*args, **kw):
    return [shutil.which("being"), *args]

def test_interrupt_saves_and_resume_finishes(root):
    cmd = being("train", "s", "--root", str(root), "--device", "cpu", "--iterations", "400", "--size", "32", "--quiet",
                "--timing", "centred")          # (the demo's tests cover the default, streaming)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = root/"s"/"model"/"metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2): time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    import torch
    stopped = torch.load(root/"s"/"model"/"latest.pt", weights_only=False)["step"]
    assert 20 <= stopped < 400          # (400 steps: a loaded machine must not finish before the signal lands)
    r = subprocess.run(being("train", "s", "--root", str(root), "--device", "cpu", "--resume", "--quiet"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "step 400" in r.stdout
    steps = [json.loads(l)["step"] for l in log.read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 400 and len(steps) == len(set(steps))   # log continues, no repeats
    assert (root/"s"/"model"/"export.ply").stat().st_size > 1000
    model = json.loads((root/"s"/"model"/"config.json").read_text())["model"]
    assert (model["window_ahead"], model["neighbours_ahead"]) == (8, 4)             # --timing centred, kept on resume

def test_eval_writes_metrics_and_video(root):
    r = subprocess.run(being("eval", "s", "--root", str(root), "--device", "cpu"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((root/"s"/"model"/"metrics.json").read_text())
    for method in ("model", "silent", "nearest_neighbour"):
        assert m[method]["psnr"] > 10 and m[method]["lmd"] is not None
    assert (root/"s"/"model"/"eval.mp4").stat().st_size > 1000
    mute = m["model"]["lmd"] >= 0.95*m["silent"]["lmd"]         # the audio does not move the mouth: say so
    assert ("warnings" in m) == mute and ("being eval: warning: the audio does not drive the mouth" in r.stderr) == mute, r.stderr

def test_eval_without_a_model_is_a_clear_error(tmp_path):
    r = subprocess.run(being("eval", "nobody", "--root", str(tmp_path), "--device", "cpu"), capture_output=True, text=True)
    assert r.returncode == 2 and "no trained model" in r.stderr and "being train nobody" in r.stderr

def test_generate_and_speak(root, tmp_path):
    import av
    from being_nb.media import probe, write_wav
    from being_nb.tts import synthesize
    from being_nb.inference import PROVENANCE
    speech = tmp_path/"speech.wav"
    write_wav(speech, synthesize("Good morning, and welcome.").audio)
    out = tmp_path/"generated.mp4"
    r = subprocess.run(being("generate", "s", "--root", str(root), "--device", "cpu", "--audio", str(speech),
                             "--output", str(out)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    info, src = probe(out), probe(speech)
    assert abs(info.frame_count() - src.audio_duration*25) <= 1 and info.has_audio
    with av.open(str(out)) as c: assert c.metadata.get("comment") == PROVENANCE
    r = subprocess.run(being("speak", "s", "--root", str(root), "--device", "cpu", "--text", "Hello.", "--output",
                             str(tmp_path/"spoken.mp4")), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and probe(tmp_path/"spoken.mp4").frame_count() > 10, r.stderr[-2000:]
    r = subprocess.run(being("generate", "s", "--root", str(root), "--device", "cpu", "--audio", str(tmp_path/"none.wav"),
                             "--output", str(tmp_path/"x.mp4")), capture_output=True, text=True)
    assert r.returncode == 2 and "none.wav: file not found" in r.stderr

def test_a_model_knows_what_it_was_trained_on(root, tmp_path):
    "Resume used the newest features (a conv1d traceback) and ignored --size/--timing; a re-prepared avatar kept its model."
    import os
    from being_nb.media import write_wav
    from being_nb.tts import synthesize
    r = subprocess.run(being("train", "s", "--root", str(root), "--device", "cpu", "--resume", "--size", "96", "--timing",
                             "streaming", "--quiet"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "these differ: size 96 (the run has 32)" in r.stderr and "neighbours_ahead 0" in r.stderr, r.stderr
    if os.environ.get("BEING_AUDIO_ENCODER"):               # a pretrained encoder's features added after training
        prepare(sample_clip().path, "s", root=root, size=96)
        assert len(list((root/"s"/"features").glob("*.npy"))) == 2
        r = subprocess.run(being("train", "s", "--root", str(root), "--device", "cpu", "--resume", "--iterations", "410",
                                 "--quiet"), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "step 410" in r.stdout, r.stderr[-2000:]
    r = subprocess.run(being("prepare", str(sample_clip().path), "--name", "s", "--root", str(root), "--size", "80",
                             "--audio-encoder", "mel", "--quiet"), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "fitted to the earlier preparation: train again" in r.stderr, r.stderr[-2000:]
    speech = tmp_path/"speech.wav"
    write_wav(speech, synthesize("Hello.").audio)
    r = subprocess.run(being("generate", "s", "--root", str(root), "--device", "cpu", "--audio", str(speech),
                             "--output", str(tmp_path/"x.mp4")), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "has since been prepared again" in r.stderr and "being train s" in r.stderr, r.stderr
    assert not (tmp_path/"x.mp4").exists()
