"""Benchmark `being prepare` on the development clips: frames/s end to end and per stage, pose jitter and
reprojection before/after smoothing, peak memory. Each clip runs in its own process so peak memory is its own.

    python bench/prepare_bench.py [--clips obama_address_20s_450.mp4 ...] [--encoder PATH_OR_mel]

Writes bench/prepare.json and bench/prepare.md."""
import argparse, json, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent/"shared"
DEFAULT_CLIPS = ["obama_address_20s_450.mp4", "man_address_60s_256.mp4", "woman_hd_uncropped_7s_1080p.mp4",
                 "woman_bluescreen_7s_700_30fps.mp4", "woman_address_8s_512.mp4", "man_map_5s_844.mp4",
                 "woman_glasses_5s_524.mp4"]

def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1])//2**20 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "python": platform.python_version(),
            "gpu": "none (CPU only)"}

def one_clip(video: str, encoder: str, root: str) -> dict:
    "Run in a child process: prepare one clip, return its figures."
    from being_nb.prepare import prepare
    t0 = time.time()
    report = prepare(video, Path(video).stem.replace(".", "_"), root=root, audio_encoder=encoder)
    total = time.time() - t0
    track = report.figures("track")
    frames = track["frames"]
    stages = {s.name: round(s.seconds, 2) for s in report.stages}
    return {"clip": Path(video).name, "frames": frames, "seconds_of_video": frames/25, "total_s": round(total, 2),
            "fps_end_to_end": round(frames/total, 1),
            "fps_per_stage": {k: round(frames/v, 1) for k, v in stages.items() if v > 0}, "stage_s": stages,
            "face_found_pct": track["face_found_pct"], "focal_px": track["focal_px"],
            "reprojection_px": {"canonical_face": track["reprojection_canonical_px"],
                                "fitted_shape_raw": track["reprojection_raw_px"],
                                "fitted_shape_smoothed": track["reprojection_px"]},
            "jitter_raw": track["jitter_raw"], "jitter_smoothed": track["jitter"],
            "parse": report.figures("parse"), "warnings": report.warnings,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)}

def markdown(results: list, info: dict) -> str:
    rows = ["| clip | frames | total s | frames/s | track fps | parse fps | features fps | face % | reproj px (avg face / fitted / smoothed) | rot. noise deg raw -> smoothed | still jitter deg raw -> smoothed | plate err | peak MiB |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        fs = r["fps_per_stage"]; rp = r["reprojection_px"]
        feat = next((v for k, v in fs.items() if k.startswith("features")), "-")
        rows.append(f"| {r['clip']} | {r['frames']} | {r['total_s']} | **{r['fps_end_to_end']}** | {fs.get('track', '-')} | "
                    f"{fs.get('parse', '-')} | {feat} | {r['face_found_pct']} | {rp['canonical_face']} / "
                    f"{rp['fitted_shape_raw']} / {rp['fitted_shape_smoothed']} | "
                    f"{r['jitter_raw']['noise_rotation_deg']} -> {r['jitter_smoothed']['noise_rotation_deg']} | "
                    f"{r['jitter_raw']['still_rotation_deg']} -> {r['jitter_smoothed']['still_rotation_deg']} | "
                    f"{r['parse'].get('plate_error', '-')} | {r['peak_rss_mib']} |")
    head = (f"# `being prepare` benchmark\n\nMachine: {info['machine']['cpu']}, {info['machine']['cores']} cores, "
            f"{info['machine']['memory_gib']} GiB, {info['machine']['gpu']}. Audio encoder: `{info['encoder']}`. "
            f"Crop size 512. Date: {info['date']}.\n\nframes/s is end to end (copy, audio, crop+track, parse, "
            "features), per clip from a cold start of its stages (model loading included). Goal: >= 25 frames/s "
            "(faster than real time). Seed to beat: EGSTalker, 8,000 frames in 13-15 min on a GPU machine "
            "(about 9-10 frames/s).\n\n")
    return head + "\n".join(rows) + "\n"

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", nargs="*", default=DEFAULT_CLIPS)
    ap.add_argument("--encoder", default=str(SHARED/"models"/"whisper-tiny.en-encoder"))
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(one_clip(*args.child))); sys.exit(0)
    os.environ.setdefault("BEING_FACE_LANDMARKER", str(SHARED/"models"/"face_landmarker.task"))
    os.environ["BEING_QUIET"] = "1"
    results = []
    with tempfile.TemporaryDirectory() as root:
        for name in args.clips:
            video = SHARED/"data"/"videos"/name
            r = subprocess.run([sys.executable, __file__, "--child", str(video), args.encoder, root],
                               capture_output=True, text=True)
            line = next((l for l in r.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None: print(name, "FAILED", r.stderr[-1500:]); continue
            results.append(json.loads(line[7:])); print(json.dumps(results[-1]))
    info = {"machine": machine(), "encoder": Path(args.encoder).name, "date": time.strftime("%Y-%m-%d")}
    (HERE/"prepare.json").write_text(json.dumps({**info, "results": results}, indent=2) + "\n")
    (HERE/"prepare.md").write_text(markdown(results, info))
    print((HERE/"prepare.md").read_text())
