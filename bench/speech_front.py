"""Does the recording level, or music, move an avatar's mouth? The inner-lip gap (MediaPipe, px at 512) and the mouth
motion (mean |difference| from the same frames driven by silence, mouth box) of an avatar driven by the same speech
at 0, -20 and -30 dB, by an instrumental, by voice over it, and by silence: raw features, and through the
`SpeechFront` (level brought to the avatar's own, voice-activity gate). Writes JSON and markdown.

    python bench/speech_front.py run --root ROOT --avatar NAME [NAME ...] --out bench/speech_front_cpu
On a GPU machine without MediaPipe, in two steps: `render` there (frames as JPEGs and the mouth motion into a
folder), `measure` here (lip gaps with MediaPipe):
    python bench/speech_front.py cases --out cases.npz
    python bench/speech_front.py render --root ROOT --avatar NAME --cases cases.npz --out DIR     # the GPU machine
    python bench/speech_front.py measure --renders DIR --out bench/speech_front_gpu
"""
import argparse, json, platform, time
from pathlib import Path
import numpy as np

def lip_gaps(frames) -> np.ndarray:
    "Inner-lip gap (landmarks 13-14) per frame, px at 512 (NaN where MediaPipe finds no face)."
    from being_nb.evaluate import mouth_measurements
    from being_nb.face import LANDMARKS
    points, _ = mouth_measurements(np.asarray(frames))
    mouth = list(LANDMARKS["mouth"])
    return np.linalg.norm(points[:, mouth.index(13)] - points[:, mouth.index(14)], axis=-1)

def mouth_box(engine, margin=3):
    from being_nb.face import LANDMARKS
    from being_nb.tracking import Track
    track = Track.load(engine.avatar.track)
    p = track.landmarks[:, LANDMARKS["lips_outer"], :2].reshape(-1, 2)*engine.size/track.size
    (x0, y0), (x1, y1) = np.floor(np.nanmin(p, 0)).astype(int) - margin, np.ceil(np.nanmax(p, 0)).astype(int) + margin
    return max(y0, 0), y1, max(x0, 0), x1

def conditions():
    from being_nb.audio import synthetic_music
    from being_nb.media import read_audio
    from being_nb.tts import synthesize
    shared = Path(__file__).resolve().parents[2]/"shared/data/audio/en_male_jfk_11s.wav"
    speech = read_audio(shared)[:8*16000] if shared.exists() else synthesize(
        "Ask not what your country can do for you; ask what you can do for your country.").audio
    music = synthetic_music(len(speech)/16000)
    level = lambda x, db: (x*10**(db/20)).astype(np.float32)
    return {"speech 0 dB": speech, "speech -20 dB": level(speech, -20), "speech -30 dB": level(speech, -30),
            "music": music, "voice over music": (speech + 0.5*music).astype(np.float32),
            "silence": np.zeros_like(speech)}

def render(args):
    "Frames of every case through raw and conditioned features, as JPEGs, and the mouth motion (no MediaPipe here)."
    import io, torch
    from PIL import Image
    from being_nb.inference import Engine
    cases = dict(np.load(args.cases))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    for name in args.avatar:
        engines = {"raw": Engine(name, args.root, args.device, condition=False),
                   "front": Engine(name, args.root, args.device, condition=True)}
        silent = np.stack(list(engines["raw"].frames(cases["silence"])))
        y0, y1, x0, x1 = mouth_box(engines["raw"])
        motion, jpegs = {}, {}
        for case, audio in cases.items():
            for mode, engine in engines.items():
                frames = np.stack(list(engine.frames(audio)))
                motion[f"{case} | {mode}"] = round(float(np.abs(frames[:, y0:y1, x0:x1].astype(np.float32)
                                                                - silent[:, y0:y1, x0:x1]).mean()), 3)
                for k, f in enumerate(frames):         # 256 px JPEGs: what comes back from the machine is limited
                    buf = io.BytesIO(); Image.fromarray(f).resize((256, 256), Image.Resampling.LANCZOS).save(buf, "JPEG", quality=90)
                    jpegs[f"{case} | {mode} | {k}"] = np.frombuffer(buf.getvalue(), np.uint8)
                print(name, case, mode, motion[f"{case} | {mode}"], flush=True)
            np.savez(out/f"{name}_frames_{list(cases).index(case)}.npz",
                     **{k.replace(" | ", "__").replace(" ", "_"): v for k, v in jpegs.items()})
            jpegs = {}
        (out/f"{name}_motion.json").write_text(json.dumps({"size": engines["raw"].size, "speech_level_db":
            round(engines["front"].speech_level, 2), "motion": motion, "cases": list(cases),
            "machine": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "torch": torch.__version__}))

def measure(args):
    "Lip gaps of the rendered JPEGs (MediaPipe), with the motion figures, as JSON + markdown."
    from being_nb.media import decode_jpeg
    results, machine, torch_version = {}, "", ""
    for meta in sorted(Path(args.renders).glob("*_motion.json")):
        name, m = meta.name[:-len("_motion.json")], json.loads(meta.read_text())
        machine, torch_version = m["machine"], m["torch"]
        z = {}
        for part in Path(args.renders).glob(f"{name}_frames_*.npz"): z.update(np.load(part))
        rows = {}
        for case in m["cases"]:
            for mode in ("raw", "front"):
                key = f"{case}__{mode}".replace(" ", "_")
                frames = [decode_jpeg(z[k].tobytes()) for k in sorted((k for k in z if k.startswith(key + "__")),
                                                                     key=lambda k: int(k.rsplit("__", 1)[1]))]
                rows[f"{case} | {mode}"] = {"lip_gap_px": round(float(np.nanmean(lip_gaps(frames))), 2),
                                            "mouth_motion": m["motion"][f"{case} | {mode}"]}
                print(name, case, mode, rows[f"{case} | {mode}"], flush=True)
        results[name] = {"size": m["size"], "speech_level_db": m["speech_level_db"], "rows": rows, "cases": m["cases"]}
    write_report(args.out, machine, torch_version, "render on the GPU machine, lip gaps measured here", results)

def write_report(out_path, machine, torch_version, command, results):
    out = {"machine": machine, "torch": torch_version, "command": command, "avatars": results}
    Path(out_path).with_suffix(".json").write_text(json.dumps(out, indent=1))
    lines = [f"# Level and music vs the mouth ({machine})", "", f"`{command}`", "",
             "Lip gap: inner-lip distance (MediaPipe landmarks 13-14, px at 512), mean over the clip. Mouth motion: mean "
             "|difference| from the same frames driven by silence in the lip box (0-255). raw: features of the audio as "
             "it is; front: `SpeechFront` (level brought to the avatar's own speech level, voice-activity gate).", ""]
    for name, r in results.items():
        lines += [f"## {name} ({r['size']} px; own speech level {r['speech_level_db']} dBFS)", "",
                  "| input | lip gap raw | lip gap front | motion raw | motion front |", "|---|---|---|---|---|"]
        for case in r["cases"]:
            a, b = r["rows"][f"{case} | raw"], r["rows"][f"{case} | front"]
            lines.append(f"| {case} | {a['lip_gap_px']} | {b['lip_gap_px']} | {a['mouth_motion']} | {b['mouth_motion']} |")
        lines.append("")
    Path(out_path).with_suffix(".md").write_text("\n".join(lines))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("run", "cases", "render", "measure"))
    ap.add_argument("--root"); ap.add_argument("--avatar", nargs="+"); ap.add_argument("--cases")
    ap.add_argument("--renders"); ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--device", default=None); ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.step == "cases":
        return np.savez(args.out, **{k: v[:int(args.seconds*16000)] for k, v in conditions().items()})
    if args.step == "render": return render(args)
    if args.step == "measure": return measure(args)
    from being_nb.inference import Engine
    from being_nb.core import get_device
    cases, results = conditions(), {}
    for name in args.avatar:
        engines = {"raw": Engine(name, args.root, args.device, condition=False),
                   "front": Engine(name, args.root, args.device, condition=True)}
        silent = np.stack(list(engines["raw"].frames(cases["silence"])))
        y0, y1, x0, x1 = mouth_box(engines["raw"])
        rows = {}
        for case, audio in cases.items():
            for mode, engine in engines.items():
                t0 = time.time()
                frames = np.stack(list(engine.frames(audio)))
                gap = lip_gaps(frames)
                motion = np.abs(frames[:, y0:y1, x0:x1].astype(np.float32) - silent[:, y0:y1, x0:x1]).mean()
                rows[f"{case} | {mode}"] = {"lip_gap_px": round(float(np.nanmean(gap)), 2),
                                            "mouth_motion": round(float(motion), 3), "seconds": round(time.time() - t0, 1)}
                print(name, case, mode, rows[f"{case} | {mode}"], flush=True)
        results[name] = {"size": engines["raw"].size, "speech_level_db": round(engines["front"].speech_level, 2), "rows": rows}
    import os, torch
    dev = get_device(args.device)
    machine = torch.cuda.get_device_name() if dev.type == "cuda" else f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    for r in results.values(): r["cases"] = list(cases)
    write_report(args.out, machine, torch.__version__, "python bench/speech_front.py run --root ROOT --avatar "
                 + " ".join(args.avatar) + f" --device {args.device}", results)

if __name__ == "__main__": main()
