"""Person masks, GrabCut alone vs seeded by MediaPipe's selfie segmentation vs the segmentation alone, on every
development clip: the background plate's error on certainly-background pixels, and the share of frames whose person
mask takes in background (more than 3% of the mask, outside the face, matching the plate within 12/255 where the
plate saw background). Writes JSON + markdown and, per clip and method, the frame whose mask takes in the most.

    python bench/masks.py --clips ../shared/data/videos ../shared/data/videos_more --work /tmp/masks --out bench/masks
"""
import argparse, json, os, platform, time, warnings
from pathlib import Path
import numpy as np

def background_taken(rgb, labels, lm, plate, match=12, grow=9):
    "Share of the person mask (outside the grown face oval) whose colour matches the plate where it saw background."
    import cv2
    from being_nb.face import BACKGROUND
    from being_nb.parsing import face_regions
    person = labels != BACKGROUND
    face = cv2.dilate(face_regions(lm, rgb.shape[0])["face"].astype(np.uint8), np.ones((grow, grow), np.uint8)).astype(bool)
    body = person & ~face
    if not body.any(): return 0.0
    same = (np.abs(rgb.astype(np.int16) - plate.image.astype(np.int16)).max(-1) <= match) & plate.known
    return float((same & body).sum()/body.sum())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", nargs="+", required=True); ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True); ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    from PIL import Image
    from being_nb.core import AvatarDir, BeingError
    from being_nb.media import decode_jpeg
    from being_nb.parsing import (PERSON_METHODS, PersonSegmenter, background_plate, colorize, parse_frames, plate_error)
    from being_nb.prepare import prepare
    from being_nb.tracking import Track
    work = Path(args.work); (work/"sheets").mkdir(parents=True, exist_ok=True)
    clips = sorted(p for d in args.clips for p in Path(d).glob("*.mp4"))
    results = {}
    for clip in clips:
        name = clip.stem
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prepare(clip, name, root=work/"avatars", size=args.size, audio_encoder="mel")
        except BeingError as e:
            print(f"{name}: skipped ({e})", flush=True); results[name] = {"skipped": str(e)}; continue
        avatar = AvatarDir(name, work/"avatars")
        track = Track.load(avatar.track)
        n = min(len(track), int(args.seconds*25))
        frames = [decode_jpeg(avatar.frame_path(i).read_bytes()) for i in range(n)]
        sample = np.linspace(0, n - 1, min(n, 40)).round().astype(int)
        row = {}
        with PersonSegmenter() as seg:
            for method in PERSON_METHODS:
                t0 = time.time()
                plate = background_plate([frames[i] for i in sample], track.landmarks[sample], method=method, segmenter=seg)
                labels = list(parse_frames(frames, track.landmarks[:n], plate, method=method, segmenter=seg))
                seconds = time.time() - t0
                taken = np.array([background_taken(f, l, lm, plate) for f, l, lm in zip(frames, labels, track.landmarks)])
                errors = [plate_error(frames[i], track.landmarks[i], plate) for i in sample]
                row[method] = {"plate_error": round(float(np.nanmean(errors)), 2),
                               "frames_taking_background_pct": round(100*float((taken > 0.03).mean()), 1),
                               "background_in_mask_pct": round(100*float(taken.mean()), 2),
                               "ms_per_frame": round(1000*seconds/n, 1)}
                worst = int(taken.argmax())
                sheet = np.concatenate([frames[worst], (0.5*frames[worst] + 0.5*colorize(labels[worst])).astype(np.uint8),
                                        plate.image], 1)
                Image.fromarray(sheet).save(work/"sheets"/f"{name}_{method}.jpg", quality=85)
                print(name, method, row[method], flush=True)
        results[name] = row
    machine = f"{platform.processor() or 'x86_64'}, {os.cpu_count()} cores (CPU)"
    Path(args.out).with_suffix(".json").write_text(json.dumps({"machine": machine, "size": args.size,
                                                               "seconds": args.seconds, "clips": results}, indent=1))
    lines = [f"# Person masks: GrabCut vs selfie segmentation ({machine})", "",
             f"`python bench/masks.py --clips ... --size {args.size} --seconds {args.seconds}`: first {args.seconds:.0f} s of "
             f"each development clip prepared at {args.size} px. Plate error: mean |frame - plate| (0-255) on pixels "
             "outside every frame's person prior where the plate saw background. Frames taking in background: share "
             "of frames whose person mask, outside the (grown) face, has more than 3% of its pixels matching the plate "
             "within 12/255 where the plate saw background; mean share of such pixels beside it.", "",
             "| clip | " + " | ".join(f"{m}: plate err / frames % / mask % / ms" for m in PERSON_METHODS) + " |",
             "|---|" + "---|"*len(PERSON_METHODS)]
    for name, row in results.items():
        if "skipped" in row: lines.append(f"| {name} | skipped: {row['skipped'][:80]} |"); continue
        lines.append(f"| {name} | " + " | ".join(f"{row[m]['plate_error']} / {row[m]['frames_taking_background_pct']} / "
                                                 f"{row[m]['background_in_mask_pct']} / {row[m]['ms_per_frame']}"
                                                 for m in PERSON_METHODS) + " |")
    ok = [r for r in results.values() if "skipped" not in r]
    lines.append("| **mean** | " + " | ".join(
        f"{np.mean([r[m]['plate_error'] for r in ok]):.2f} / {np.mean([r[m]['frames_taking_background_pct'] for r in ok]):.1f} / "
        f"{np.mean([r[m]['background_in_mask_pct'] for r in ok]):.2f} / {np.mean([r[m]['ms_per_frame'] for r in ok]):.1f}"
        for m in PERSON_METHODS) + " |")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__": main()
