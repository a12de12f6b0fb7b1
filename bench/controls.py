"""What each control does on real people's avatars (issue 14): `python bench/controls.py ROOT NAME... --out bench/controls`.

For each avatar (trained beforehand), 25 frames of silence are rendered without controls and with each control; MediaPipe
reads the rendered faces (blendshape scores and head angles, averaged over the frames) and the change against no control
is reported, with a contact sheet of the middle frame of each. Machine and settings go in the JSON."""
import argparse, json, math, os, platform, sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image, ImageDraw
from being_nb.controls import Controls
from being_nb.inference import Engine
from being_nb.tracking import landmarker, _mp_image

CONTROLS = {
    "none": Controls(),
    "browInnerUp=1": Controls(expression={"browInnerUp": 1.0}),
    "browDown=1": Controls(expression={"browDownLeft": 1.0, "browDownRight": 1.0}),
    "eyeBlink=1": Controls(expression={"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}),
    "eyeWide=1": Controls(expression={"eyeWideLeft": 1.0, "eyeWideRight": 1.0}),
    "surprised": Controls(emotion="surprised"),
    "angry": Controls(emotion="angry"),
    "blink 30/min": Controls(blink_rate=30),
    "yaw +12": Controls(yaw=12), "pitch +12": Controls(pitch=12), "roll +12": Controls(roll=12),
    "still": Controls(pose="still"),
}
READ = ("browInnerUp", "browDownLeft", "eyeBlinkLeft", "eyeWideLeft", "eyeSquintLeft", "jawOpen")

def read_faces(images):
    "MediaPipe's mean blendshape scores (READ) and (yaw, pitch, roll) over `images`, and how many frames had a face."
    scores, angles = [], []
    with landmarker(video_mode=False) as lm:
        for img in images:
            f = lm.detect(_mp_image(np.ascontiguousarray(img)))
            if not f.face_landmarks: continue
            bs = {b.category_name: b.score for b in f.face_blendshapes[0]}
            m = np.array(f.facial_transformation_matrixes[0])
            scores.append([bs[k] for k in READ])
            angles.append((math.degrees(math.atan2(m[0, 2], m[2, 2])), math.degrees(math.asin(-m[1, 2])),
                           math.degrees(math.atan2(m[1, 0], m[1, 1]))))
    return np.mean(scores, 0), np.mean(angles, 0), len(scores)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("names", nargs="+"); ap.add_argument("--out", default="bench/controls")
    ap.add_argument("--size", type=int, default=256); ap.add_argument("--frames", type=int, default=25)
    args = ap.parse_args()
    report = {"machine": f"{platform.processor() or 'cpu'} x{os.cpu_count()}", "torch": torch.__version__, "size": args.size,
              "frames": args.frames, "read": list(READ), "avatars": {}}
    sheets = []
    for name in args.names:
        engine = Engine(name, args.root, "cpu", size=args.size)
        silence = np.zeros(args.frames*640, np.float32)
        rows, tiles = {}, []
        for label, c in CONTROLS.items():
            frames = np.stack(list(engine.frames(silence, controls=c)))
            scores, angles, found = read_faces(frames)
            rows[label] = {"scores": dict(zip(READ, np.round(scores, 3).tolist())),
                           "angles_deg": np.round(angles, 1).tolist(), "faces_found": found,
                           "pixels_changed": None}
            tiles.append((label, frames[args.frames//2]))
            if label == "none": base_frames = frames.astype(np.float32)
            else: rows[label]["pixels_changed"] = round(float(np.abs(frames.astype(np.float32) - base_frames).mean()), 2)
            print(name, label, rows[label], flush=True)
        base = rows["none"]
        for label, r in rows.items():
            r["score_change"] = {k: round(r["scores"][k] - base["scores"][k], 3) for k in READ}
            r["angle_change_deg"] = [round(a - b, 1) for a, b in zip(r["angles_deg"], base["angles_deg"])]
        report["avatars"][name] = {"gaussians": engine.budget.total, "rows": rows}
        w = args.size//2
        sheet = Image.new("RGB", (w*len(tiles), w + 16), "white")
        for k, (label, img) in enumerate(tiles):
            sheet.paste(Image.fromarray(img).resize((w, w)), (k*w, 16))
            ImageDraw.Draw(sheet).text((k*w + 2, 2), label, fill="black")
        sheets.append(sheet)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=1))
    full = Image.new("RGB", (max(s.width for s in sheets), sum(s.height for s in sheets)), "white")
    y = 0
    for s in sheets: full.paste(s, (0, y)); y += s.height
    full.save(f"{out}.jpg", quality=85)

if __name__ == "__main__":
    main()
