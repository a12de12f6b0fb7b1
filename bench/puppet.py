"""Puppeteering an avatar with its own tracked blendshape track (issue 14).

python bench/puppet.py ROOT NAME OUT.json [--size 256] [--device cpu]

The avatar's own MediaPipe track (`track.npz`, ARKit order) is written as a CSV at 25 fps and drives `being generate
NAME --blendshapes` with no audio (a blendshape-driven avatar: `being train --prior`). The rendered frames are
tracked again by MediaPipe FaceLandmarker (upscaled to 512 px, as `being eval` does); Pearson r between the input
and the rendered jawOpen and eyeBlink (mean of left and right), over every frame (training and held-out frames: the
track is the clip's own). For scale: the same r for the avatar driven by its own audio through the speech prior.
"""
import argparse, json, platform, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

def tracked(path, size):
    "jawOpen, eyeBlink [T] by FaceLandmarker in an mp4's frames."
    from PIL import Image
    from being_nb.media import read_frames
    from being_nb.tracking import landmarker, _mp_image
    out = []
    with landmarker(video_mode=False) as lm:
        for img in read_frames(path):
            big = np.asarray(Image.fromarray(img).resize((512, 512), Image.Resampling.BICUBIC))
            r = lm.detect(_mp_image(big))
            if not r.face_blendshapes: out.append((np.nan, np.nan)); continue
            s = {c.category_name: c.score for c in r.face_blendshapes[0]}
            out.append((s["jawOpen"], (s["eyeBlinkLeft"] + s["eyeBlinkRight"])/2))
    return np.array(out)

def pearson(a, b):
    ok = ~np.isnan(a) & ~np.isnan(b)
    return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--size", type=int, default=256); ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    from being_nb.blendshapes import write_blendshapes
    from being_nb.core import AvatarDir
    from being_nb.face import arkit_from_mediapipe, blendshape_index
    from being_nb.tracking import Track
    avatar = AvatarDir(a.name, a.root)
    track = Track.load(avatar.track)
    weights = arkit_from_mediapipe(track.blendshapes, list(track.blendshape_names))
    blink = lambda w: (w[:, blendshape_index("eyeBlinkLeft")] + w[:, blendshape_index("eyeBlinkRight")])/2
    jaw_in, blink_in = weights[:, blendshape_index("jawOpen")], blink(weights)
    rows = {}
    with tempfile.TemporaryDirectory() as d:
        write_blendshapes(Path(d)/"own.csv", weights, fps=25)
        runs = {"blendshape track, no audio": ["--blendshapes", str(Path(d)/"own.csv")],
                "own audio through the speech prior": ["--audio", str(avatar.audio)]}
        for label, args in runs.items():
            t = time.time()
            r = subprocess.run(["being", "generate", a.name, "--root", a.root, "--device", a.device, "--size", str(a.size),
                                "--output", str(Path(d)/"out.mp4"), "--quiet", *args], capture_output=True, text=True)
            if r.returncode: sys.exit(r.stderr)
            got = tracked(Path(d)/"out.mp4", a.size)
            n = min(len(got), len(weights))
            rows[label] = {"frames": n, "jawOpen_r": pearson(jaw_in[:n], got[:n, 0]), "eyeBlink_r": pearson(blink_in[:n], got[:n, 1]),
                           "face_found": round(float((~np.isnan(got[:n, 0])).mean()), 3), "seconds": round(time.time() - t, 1)}
            print(label, rows[label], flush=True)
    out = {"avatar": a.name, "machine": f"{platform.machine()}, {a.device}", "size": a.size,
           "input": "the avatar's own MediaPipe track (ARKit order), 25 fps", "runs": rows}
    Path(a.out).write_text(json.dumps(out, indent=1))

if __name__ == "__main__": main()
