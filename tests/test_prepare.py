"""`being prepare` as a user meets it: bad inputs give clear errors and leave nothing half-done; reruns skip;
a killed run resumes."""
import json, os, resource, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from being_nb.core import AvatarDir, BeingError
from being_nb.prepare import prepare
from clips import clip, portrait

SIZE = 192      # crop side for tests: small and quick, still tracked by MediaPipe

def run_prepare(video, tmp_path, name="a", **kw):
    return prepare(video, name, root=tmp_path/"avatars", size=SIZE, audio_encoder="mel", **kw)

def assert_refused(video, tmp_path, message):
    with pytest.raises(BeingError) as e:
        run_prepare(video, tmp_path)
    assert message in str(e.value) and str(video) in str(e.value), str(e.value)
    avatar = AvatarDir("a", tmp_path/"avatars")
    recorded = json.loads(avatar.manifest.path.read_text()) if avatar.manifest.path.exists() else {}
    assert "track" not in recorded and not avatar.frames_dir.exists()     # nothing half-written looks complete
    return str(e.value)

def test_a_good_clip_prepares_and_reruns_in_seconds(tmp_path):
    video = clip(tmp_path/"talk.mp4", seconds=6)
    report = run_prepare(video, tmp_path)
    av = report.avatar
    n = report.figures("track")["frames"]
    assert n == 150 and len(list(av.frames_dir.glob("*.jpg"))) == n == len(list(av.masks_dir.glob("*.png")))
    assert av.track.exists() and av.background.exists() and av.audio.exists() and av.source.exists()
    feats = np.load(av.feature_path("mel"))
    assert abs(len(feats) - 6*50) <= 1
    assert report.figures("track")["face_found_pct"] == 100.0
    t0 = time.time()
    again = run_prepare(video, tmp_path)
    assert all(s.skipped for s in again.stages) and time.time() - t0 < 10
    assert video.read_bytes()[:8] and video.stat().st_size == av.source.stat().st_size   # source untouched, copied

def test_not_a_video(tmp_path):
    bad = tmp_path/"notes.mp4"; bad.write_text("hello")
    assert_refused(bad, tmp_path, "not a readable video")

def test_no_face_anywhere(tmp_path):
    rng = np.random.default_rng(0)
    video = clip(tmp_path/"wall.mp4", frame=lambda i, img: np.full_like(img, 90) + rng.integers(0, 20, img.shape, dtype=np.uint8))
    assert_refused(video, tmp_path, "no face found in any frame")

def test_face_in_under_95_percent_of_frames(tmp_path):
    blank = lambda i, img: np.zeros_like(img) if 40 <= i < 52 else img          # 12 of 100 frames
    message = assert_refused(clip(tmp_path/"gaps.mp4", frame=blank), tmp_path, "no usable face in 12 of 100 frames")
    assert "frames 40-51" in message

def test_two_people(tmp_path):
    from PIL import Image
    def two(i, img):
        half = np.asarray(Image.fromarray(img).resize((img.shape[1]//2, img.shape[0]//2)))
        out = np.full_like(img, 40); h = img.shape[0]//4
        out[h:h + half.shape[0], :half.shape[1]] = half; out[h:h + half.shape[0], half.shape[1]:] = half
        return out
    assert_refused(clip(tmp_path/"two.mp4", frame=two), tmp_path, "two people of similar size")

def test_face_leaving_the_frame(tmp_path):
    def leave(i, img):
        shift = max(0, (i - 70)*12)                                              # slides out from frame 70
        out = np.zeros_like(img); w = img.shape[1]
        if shift < w: out[:, shift:] = img[:, :w - shift]
        return out
    message = assert_refused(clip(tmp_path/"leave.mp4", frame=leave), tmp_path, "no usable face in")
    assert "-99" in message                                                       # the range runs to the end

def test_too_short_and_few_shot(tmp_path):
    assert_refused(clip(tmp_path/"short.mp4", seconds=2.5), tmp_path, "at least 3 s")
    with pytest.warns(UserWarning, match="few-shot"):
        run_prepare(clip(tmp_path/"four.mp4", seconds=4), tmp_path)

def test_no_audio_track(tmp_path):
    assert_refused(clip(tmp_path/"mute.mp4", audio=None), tmp_path, "has no audio track")

def test_silent_audio_is_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="silent"):
        run_prepare(clip(tmp_path/"silent.mp4", audio="silent"), tmp_path)

def test_30_fps_is_resampled(tmp_path):
    with pytest.warns(UserWarning, match="30.00 fps source: resampled"):
        report = run_prepare(clip(tmp_path/"thirty.mp4", seconds=4, fps=30), tmp_path)
    assert report.figures("track")["frames"] == 100

def test_killed_run_resumes(tmp_path):
    video = clip(tmp_path/"talk.mp4", seconds=5)
    root = tmp_path/"avatars"
    cmd = [shutil.which("being"), "prepare", str(video), "--name", "k", "--root", str(root), "--size", str(SIZE),
           "--audio-encoder", "mel", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = root/"k"/"manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (manifest.exists() and "audio" in manifest.read_text()): time.sleep(0.05)
    time.sleep(0.5)                                                               # into the track stage
    proc.send_signal(signal.SIGKILL); proc.wait()
    recorded = json.loads(manifest.read_text())
    assert "source" in recorded and "audio" in recorded and "parse" not in recorded
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "source                   skipped" in r.stdout and "audio                    skipped" in r.stdout
    assert len(list((root/"k"/"frames").glob("*.jpg"))) == 125
    assert not list((root/"k").glob(".*tmp*")), "temporary files of the killed run were left behind"

def test_4k_is_decoded_one_frame_at_a_time(tmp_path):
    from PIL import Image
    big = np.asarray(Image.fromarray(portrait(512)).resize((2160, 2160)))
    video = clip(tmp_path/"uhd.mp4", seconds=3.2, size=512,
                 frame=lambda i, img: np.pad(big, ((0, 0), (840, 840), (0, 0)), mode="edge"))
    script = ("import resource, sys; from being_nb.prepare import prepare; "
              f"prepare({str(video)!r}, 'u', root={str(tmp_path/'avatars')!r}, size={SIZE}, audio_encoder='mel'); "
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "BEING_QUIET": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    peak_mb = int(r.stdout.split()[-1])/1024
    frame_mb = 3840*2160*3/2**20
    assert peak_mb < 1500, f"peak {peak_mb:.0f} MB for 80 frames of {frame_mb:.0f} MB each"

def test_one_writer_at_a_time(tmp_path):
    "Two `prepare` runs of one name seconds apart: the first died with a false 'no usable face', blaming the clip."
    video = clip(tmp_path/"talk.mp4", seconds=5)
    root = tmp_path/"avatars"
    cmd = [shutil.which("being"), "prepare", str(video), "--name", "k", "--root", str(root), "--size", str(SIZE),
           "--audio-encoder", "mel", "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock, deadline = root/"k"/".lock", time.time() + 60
    while time.time() < deadline and not (lock.exists() and "prepare" in lock.read_text()): time.sleep(0.05)
    for second in (cmd, [shutil.which("being"), "train", "k", "--root", str(root), "--device", "cpu", "--quiet"]):
        r = subprocess.run(second, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "`being prepare` (pid" in r.stderr and "is writing this avatar" in r.stderr, r.stderr
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert len(list((root/"k"/"frames").glob("*.jpg"))) == 125
