"""What each control does on real people's avatars (issue 14): `python bench/controls.py ROOT NAME... --out bench/controls`.

On a GPU machine (no MediaPipe there): `python bench/controls.py ROOT NAME... --render-only FRAMES.npz --device cuda`
renders the frames (JPEG-packed); then here `python bench/controls.py ROOT NAME... --rendered FRAMES.npz --out ...`
reads them.

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
    "smile=1": Controls(expression={"mouthSmileLeft": 1.0, "mouthSmileRight": 1.0}),
    "happy": Controls(emotion="happy"),
    "gaze left 20": Controls(gaze=(20, 0)), "gaze right 20": Controls(gaze=(-20, 0)),
    "gaze up 15": Controls(gaze=(0, 15)), "gaze down 15": Controls(gaze=(0, -15)),
}
READ = ("browInnerUp", "browDownLeft", "eyeBlinkLeft", "eyeWideLeft", "eyeSquintLeft", "jawOpen", "mouthSmileLeft",
        "eyeLookOutLeft", "eyeLookInLeft", "eyeLookUpLeft", "eyeLookDownLeft")

def iris_offset(L:np.ndarray) -> np.ndarray:
    "(x, y) of both irises (MediaPipe's landmarks 468, 473) from their eye corners' midpoint, in eye widths, averaged."
    return np.mean([((L[i, 0] - (L[a, 0] + L[b, 0])/2)/abs(L[a, 0] - L[b, 0]), (L[i, 1] - (L[a, 1] + L[b, 1])/2)/abs(L[a, 0] - L[b, 0]))
                    for i, a, b in ((468, 33, 133), (473, 362, 263))], 0)

def read_faces(images):
    """MediaPipe's mean blendshape scores (READ), (yaw, pitch, roll), and iris offset (x, y: both irises from their eye
    corners' midpoint, in eye widths, x to the image's right, y down) over `images`, and how many frames had a face."""
    scores, angles, irises = [], [], []
    with landmarker(video_mode=False) as lm:
        for img in images:
            f = lm.detect(_mp_image(np.ascontiguousarray(img)))
            if not f.face_landmarks: continue
            bs = {b.category_name: b.score for b in f.face_blendshapes[0]}
            m = np.array(f.facial_transformation_matrixes[0])
            scores.append([bs[k] for k in READ])
            irises.append(iris_offset(np.array([[p.x, p.y] for p in f.face_landmarks[0]])))
            angles.append((math.degrees(math.atan2(m[0, 2], m[2, 2])), math.degrees(math.asin(-m[1, 2])),
                           math.degrees(math.atan2(m[1, 0], m[1, 1]))))
    return np.mean(scores, 0), np.mean(angles, 0), np.mean(irises, 0), len(scores)

def render_all(names, root, device, size, n_frames):
    "{name: {label: frames [n, H, W, 3]}} and {name: info}: each control on `n_frames` frames of silence."
    out, info = {}, {}
    for name in names:
        engine = Engine(name, root, device, size=size)
        silence = np.zeros(n_frames*640, np.float32)
        out[name] = {label: np.stack(list(engine.frames(silence, controls=c))) for label, c in CONTROLS.items()}
        info[name] = {"gaussians": engine.budget.total, "drive": engine.model.config.drive, "size": engine.size,
                      "torch": torch.__version__,
                      "machine": torch.cuda.get_device_name() if engine.device.type == "cuda" else platform.processor() or "cpu"}
    return out, info

def pack(path, rendered, info):
    from being_nb.media import encode_jpeg
    arrays = {"info": json.dumps(info)}
    for name, runs in rendered.items():
        for k, (label, frames) in enumerate(runs.items()):
            blobs = [encode_jpeg(f, 85) for f in frames]
            arrays[f"{name}/{k}"] = np.frombuffer(b"".join(blobs), np.uint8)
            arrays[f"{name}/{k}_ends"] = np.cumsum([len(b) for b in blobs])
    np.savez(path, **arrays)

def unpack(path, names):
    from being_nb.media import decode_jpeg
    from npz_parts import load
    z = load(path)
    out = {}
    for name in names:
        out[name] = {}
        for k, label in enumerate(CONTROLS):
            data, ends = z[f"{name}/{k}"].tobytes(), z[f"{name}/{k}_ends"]
            out[name][label] = np.stack([decode_jpeg(data[s:e]) for s, e in zip(np.r_[0, ends[:-1]], ends)])
    return out, json.loads(str(z["info"]))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("names", nargs="+"); ap.add_argument("--out", default="bench/controls")
    ap.add_argument("--size", type=int, default=256); ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--device", default="cpu"); ap.add_argument("--render-only"); ap.add_argument("--rendered")
    args = ap.parse_args()
    if args.render_only:
        rendered, info = render_all(args.names, args.root, args.device, args.size or None, args.frames)
        return pack(args.render_only, rendered, info)
    rendered, info = (unpack(args.rendered, args.names) if args.rendered
                      else render_all(args.names, args.root, args.device, args.size, args.frames))
    first = next(iter(rendered.values()))["none"]
    report = {"read_on": f"{platform.processor() or 'cpu'} x{os.cpu_count()}", "size": first.shape[1],
              "frames": len(first), "read": list(READ), "avatars": {},
              "rendered": f"on {next(iter(info.values()))['machine']}, read here" if args.rendered else "here"}
    sheets = []
    for name in args.names:
        rows, tiles = {}, []
        for label, frames in rendered[name].items():
            scores, angles, iris, found = read_faces(frames)
            rows[label] = {"scores": dict(zip(READ, np.round(scores, 3).tolist())),
                           "angles_deg": np.round(angles, 1).tolist(), "iris_eye_widths": np.round(iris, 4).tolist(),
                           "faces_found": found,
                           "pixels_changed": None}
            tiles.append((label, frames[len(frames)//2]))
            if label == "none": base_frames = frames.astype(np.float32)
            else: rows[label]["pixels_changed"] = round(float(np.abs(frames.astype(np.float32) - base_frames).mean()), 2)
            print(name, label, rows[label], flush=True)
        base = rows["none"]
        for label, r in rows.items():
            r["score_change"] = {k: round(r["scores"][k] - base["scores"][k], 3) for k in READ}
            r["angle_change_deg"] = [round(a - b, 1) for a, b in zip(r["angles_deg"], base["angles_deg"])]
            r["iris_shift_eye_widths"] = [round(a - b, 4) for a, b in zip(r["iris_eye_widths"], base["iris_eye_widths"])]
        report["avatars"][name] = {**info[name], "size": rendered[name]["none"].shape[1], "rows": rows}
        w = 128
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
