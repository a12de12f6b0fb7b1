"""Where a puppeteered avatar's gaze and blinks come from (issue 14): `python bench/gaze.py ROOT NAME OUT.json [--size 256]`.

A blendshape-driven avatar is driven by its own MediaPipe track (no audio) with groups of inputs held at their mean
over the clip (the mouth, the gaze, the eyes and brows), under the clip's replayed camera or in a still pose
(`Controls(pose="still")`); MediaPipe reads the renders back and Pearson r with the track is reported, as
`bench/puppet.py` computes it. Then the gaze control: 25 frames of silence in a still pose with `Controls(gaze=...)`,
and how far MediaPipe's iris landmarks move against none, in eye widths (x to the image's right, y down).
Runs on the CPU (or `--device cuda`, with MediaPipe installed there)."""
import argparse, json, os, platform, sys
import numpy as np
sys.path.insert(0, os.path.dirname(__file__))
from controls import iris_offset
from puppet import gaze, own_weights, pearson, tracked
from being_nb.controls import Controls
from being_nb.core import AvatarDir
from being_nb.face import SPEECH_BLENDSHAPES, blendshape_index
from being_nb.inference import Engine
from being_nb.motion import EXPRESSION_BLENDSHAPES, GAZE_BLENDSHAPES
from being_nb.tracking import _mp_image, landmarker

def iris(frames) -> np.ndarray:
    "Mean (x, y) offset of both irises from their eye corners' midpoint, in eye widths, over `frames`."
    with landmarker(video_mode=False) as lm:
        found = [lm.detect(_mp_image(np.ascontiguousarray(img))) for img in frames]
    return np.mean([iris_offset(np.array([[p.x, p.y] for p in f.face_landmarks[0]])) for f in found if f.face_landmarks], 0)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--size", type=int, default=256); ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    w = own_weights(AvatarDir(a.name, a.root))
    col = lambda n: w[:, blendshape_index(n)]
    gaze_in = np.stack(gaze(col), 1)
    blink_in = (col("eyeBlinkLeft") + col("eyeBlinkRight"))/2
    engine = Engine(a.name, a.root, a.device, size=a.size)
    def held(*groups):
        v = w.copy()
        for g in groups:
            for n in g: v[:, blendshape_index(n)] = col(n).mean()
        return v
    still = Controls(pose="still")
    runs = {}
    for label, track, c in (("full track", w, None), ("gaze held", held(GAZE_BLENDSHAPES), None),
                            ("mouth held", held(SPEECH_BLENDSHAPES), None),
                            ("still pose, full track", w, still), ("still pose, mouth held", held(SPEECH_BLENDSHAPES), still),
                            ("still pose, mouth and gaze held", held(SPEECH_BLENDSHAPES, GAZE_BLENDSHAPES), still),
                            ("still pose, only gaze varies", held(SPEECH_BLENDSHAPES, EXPRESSION_BLENDSHAPES), still)):
        got = tracked(list(engine.frames(None, track=track, controls=c)))
        runs[label] = {"jawOpen_r": pearson(col("jawOpen"), got[:, 0]), "eyeBlink_r": pearson(blink_in, got[:, 1]),
                       "gaze_left_r": pearson(gaze_in[:, 0], got[:, 2]), "gaze_down_r": pearson(gaze_in[:, 1], got[:, 3])}
        print(label, runs[label], flush=True)
    silence = np.zeros(25*640, np.float32)
    base = iris(list(engine.frames(silence, controls=still)))
    shifts = {}
    for label, g in (("gaze left 20", (20, 0)), ("gaze right 20", (-20, 0)), ("gaze up 15", (0, 15)), ("gaze down 15", (0, -15))):
        d = iris(list(engine.frames(silence, controls=Controls(pose="still", gaze=g)))) - base
        shifts[label] = {"iris_x": round(float(d[0]), 4), "iris_y": round(float(d[1]), 4)}
        print(label, shifts[label], flush=True)
    cfg = engine.model.config
    out = {"avatar": a.name, "size": engine.size, "gaussians": engine.budget.total, "still_eyes": cfg.still_eyes,
           "inputs": cfg.expression_inputs, "machine": f"{platform.machine()}, {a.device}", "runs": runs,
           "gaze_control_iris_shift": shifts}
    json.dump(out, open(a.out, "w"), indent=1)

if __name__ == "__main__":
    main()
