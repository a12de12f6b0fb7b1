"""Does the recording level, or music, move an avatar's mouth? The inner-lip gap (MediaPipe, px at 512) and the mouth
motion (mean |difference| from the same frames driven by silence, mouth box) of an avatar driven by the same speech
at 0, -20 and -30 dB, by an instrumental, by voice over it, and by silence: raw features, and through the
`SpeechFront` (level brought to the avatar's own, voice-activity gate). Writes JSON and markdown.

    python bench/speech_front.py --root ROOT --avatar NAME [NAME ...] --out bench/speech_front_cpu
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

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True); ap.add_argument("--avatar", nargs="+", required=True)
    ap.add_argument("--device", default=None); ap.add_argument("--out", required=True)
    args = ap.parse_args()
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
    import torch
    dev = get_device(args.device)
    machine = torch.cuda.get_device_name() if dev.type == "cuda" else f"{platform.processor() or 'cpu'}, {__import__('os').cpu_count()} cores"
    out = {"machine": machine, "torch": torch.__version__, "command": "python bench/speech_front.py " + " ".join(
        f"--{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in vars(args).items() if v), "avatars": results}
    Path(args.out).with_suffix(".json").write_text(json.dumps(out, indent=1))
    lines = [f"# Level and music vs the mouth ({machine})", "", f"`{out['command']}`", "",
             "Lip gap: inner-lip distance (MediaPipe landmarks 13-14, px at 512), mean over the clip. Mouth motion: mean "
             "|difference| from the same frames driven by silence in the lip box (0-255). raw: features of the audio as "
             "it is; front: `SpeechFront` (level brought to the avatar's own speech level, voice-activity gate).", ""]
    for name, r in results.items():
        lines += [f"## {name} ({r['size']} px; own speech level {r['speech_level_db']} dBFS)", "",
                  "| input | lip gap raw | lip gap front | motion raw | motion front |", "|---|---|---|---|---|"]
        for case in cases:
            a, b = r["rows"][f"{case} | raw"], r["rows"][f"{case} | front"]
            lines.append(f"| {case} | {a['lip_gap_px']} | {b['lip_gap_px']} | {a['mouth_motion']} | {b['mouth_motion']} |")
        lines.append("")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines))

if __name__ == "__main__": main()
