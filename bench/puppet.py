"""Puppeteering an avatar with its own tracked blendshape track (issue 14).

python bench/puppet.py ROOT NAME OUT.json [--size 256] [--device cpu]       # render with `being generate`, then track
python bench/puppet.py ROOT NAME FRAMES.npz --render-only --device cuda     # a GPU machine (no PyAV, no MediaPipe):
                                                                            # render the same frames, JPEG-packed
python bench/puppet.py ROOT NAME OUT.json --rendered FRAMES.npz            # here: track the GPU's frames

The avatar's own MediaPipe track (`track.npz`, ARKit order) is written as a CSV at 25 fps and drives `being generate
NAME --blendshapes` with no audio (a blendshape-driven avatar: `being train --prior`); `--render-only` does what that
command does (`track_at_fps` on the same CSV, `Engine.frames`) and keeps the frames as quality-85 JPEGs (as served) instead of an
mp4. The rendered frames are tracked again by MediaPipe FaceLandmarker (upscaled to 512 px, as `being eval` does);
Pearson r between the input and the rendered jawOpen and eyeBlink (mean of left and right), over every frame (training
and held-out frames: the track is the clip's own). For scale: the same r for the avatar driven by its own audio through
the speech prior.
"""
import argparse, json, platform, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np

def tracked(images):
    "jawOpen, eyeBlink, horizontal and vertical gaze [T, 4] by FaceLandmarker in RGB frames (`gaze`)."
    from PIL import Image
    from being_nb.tracking import landmarker, _mp_image
    out = []
    with landmarker(video_mode=False) as lm:
        for img in images:
            big = np.asarray(Image.fromarray(img).resize((512, 512), Image.Resampling.BICUBIC))
            r = lm.detect(_mp_image(big))
            if not r.face_blendshapes: out.append((np.nan,)*4); continue
            s = {c.category_name: c.score for c in r.face_blendshapes[0]}
            out.append((s["jawOpen"], (s["eyeBlinkLeft"] + s["eyeBlinkRight"])/2, *gaze(lambda n: s[n])))
    return np.array(out)

def gaze(w):
    "(to the person's left, down) from ARKit eyeLook weights `w(name)`: each the mean of both eyes' opposite pairs."
    left = (w("eyeLookOutLeft") + w("eyeLookInRight") - w("eyeLookInLeft") - w("eyeLookOutRight"))/2
    down = (w("eyeLookDownLeft") + w("eyeLookDownRight") - w("eyeLookUpLeft") - w("eyeLookUpRight"))/2
    return left, down

def pearson(a, b):
    ok = ~np.isnan(a) & ~np.isnan(b)
    return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3)

RUNS = ("blendshape track, no audio", "own audio through the speech prior", "blendshape track, no audio, still pose")
# The third holds the head in its most typical pose (`--pose still`) instead of replaying the clip's: what follows the
# track then follows the avatar's inputs, not the replayed camera (its view-dependent colours can make the irises look
# as if they followed the clip's gaze: on the CPU-sized avatar the rendered gaze follows the clip's with r 0.96 even
# with every gaze input held at its mean, and with r -0.02 in a still pose).

def own_weights(avatar):
    from being_nb.face import arkit_from_mediapipe
    from being_nb.tracking import Track
    track = Track.load(avatar.track)
    return arkit_from_mediapipe(track.blendshapes, list(track.blendshape_names))

def render_generate(a, avatar, csv, label, out):
    "Frames as `being generate` writes them (an mp4, decoded)."
    from being_nb.media import read_frames
    args = ["--blendshapes", str(csv)] if label != RUNS[1] else ["--audio", str(avatar.audio)]
    if label == RUNS[2]: args += ["--pose", "still"]
    r = subprocess.run(["being", "generate", a.name, "--root", a.root, "--device", a.device, "--size", str(a.size),
                        "--output", str(out), "--quiet", *args], capture_output=True, text=True)
    if r.returncode: sys.exit(r.stderr)
    return list(read_frames(out))

def render_engine(engine, avatar, csv, label):
    "The same frames through the Python API (what `being generate` calls), without an mp4."
    from being_nb.inference import track_at_fps
    from being_nb.media import read_audio
    from being_nb.controls import Controls
    if label == RUNS[1]: return list(engine.frames(read_audio(avatar.audio)))
    return list(engine.frames(None, track_at_fps(csv), controls=Controls(pose="still") if label == RUNS[2] else None))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--size", type=int, default=256); ap.add_argument("--device", default="cpu")
    ap.add_argument("--render-only", action="store_true"); ap.add_argument("--rendered")
    a = ap.parse_args()
    from being_nb.blendshapes import write_blendshapes
    from being_nb.core import AvatarDir
    from being_nb.face import blendshape_index
    from being_nb.media import decode_jpeg, encode_jpeg
    avatar = AvatarDir(a.name, a.root)
    weights = own_weights(avatar)
    blink = lambda w: (w[:, blendshape_index("eyeBlinkLeft")] + w[:, blendshape_index("eyeBlinkRight")])/2
    jaw_in, blink_in = weights[:, blendshape_index("jawOpen")], blink(weights)
    gaze_in = np.stack(gaze(lambda n: weights[:, blendshape_index(n)]), 1)
    rows, packed, info = {}, {}, {}
    with tempfile.TemporaryDirectory() as d:
        csv = write_blendshapes(Path(d)/"own.csv", weights, fps=25)
        engine = None
        if a.render_only:
            import torch
            from being_nb.inference import Engine
            engine = Engine(a.name, a.root, a.device, size=a.size if a.size else None)
            info = {"machine": f"{platform.machine()}, {torch.cuda.get_device_name() if engine.device.type == 'cuda' else 'cpu'}",
                    "gaussians": engine.budget.total, "size": engine.size}
        elif a.rendered:
            from npz_parts import load
            z = load(a.rendered)
            info = json.loads(str(z["info"]))
        for k, label in enumerate(RUNS):
            t = time.time()
            if a.render_only:
                frames = render_engine(engine, avatar, csv, label)
                blobs = [encode_jpeg(f, 85) for f in frames]
                packed[f"run{k}"] = np.frombuffer(b"".join(blobs), np.uint8)
                packed[f"run{k}_ends"] = np.cumsum([len(b) for b in blobs])
                print(label, len(frames), "frames", round(time.time() - t, 1), "s", flush=True)
                continue
            if a.rendered:
                if f"run{k}" not in z: continue           # rendered before this run was added
                data, ends = z[f"run{k}"].tobytes(), z[f"run{k}_ends"]
                frames = [decode_jpeg(data[s:e]) for s, e in zip(np.r_[0, ends[:-1]], ends)]
            else: frames = render_generate(a, avatar, csv, label, Path(d)/"out.mp4")
            got = tracked(frames)
            n = min(len(got), len(weights))
            rows[label] = {"frames": n, "jawOpen_r": pearson(jaw_in[:n], got[:n, 0]), "eyeBlink_r": pearson(blink_in[:n], got[:n, 1]),
                           "gaze_left_r": pearson(gaze_in[:n, 0], got[:n, 2]), "gaze_down_r": pearson(gaze_in[:n, 1], got[:n, 3]),
                           "face_found": round(float((~np.isnan(got[:n, 0])).mean()), 3),
                           "input_range": {"jawOpen": [round(float(jaw_in.min()), 3), round(float(jaw_in.max()), 3)],
                                           "eyeBlink": [round(float(blink_in.min()), 3), round(float(blink_in.max()), 3)]},
                           "rendered_range": {"jawOpen": [round(float(np.nanmin(got[:n, 0])), 3), round(float(np.nanmax(got[:n, 0])), 3)],
                                              "eyeBlink": [round(float(np.nanmin(got[:n, 1])), 3), round(float(np.nanmax(got[:n, 1])), 3)]},
                           "seconds": round(time.time() - t, 1)}
            print(label, rows[label], flush=True)
    if a.render_only:
        np.savez(a.out, info=json.dumps(info), **packed)
        return
    out = {"avatar": a.name, "machine": info.get("machine", f"{platform.machine()}, {a.device}"), "size": info.get("size", a.size),
           "gaussians": info.get("gaussians"), "rendered": f"on {info['machine']}, tracked here" if a.rendered else "here",
           "input": "the avatar's own MediaPipe track (ARKit order), 25 fps", "runs": rows}
    Path(a.out).write_text(json.dumps(out, indent=1))

if __name__ == "__main__": main()
