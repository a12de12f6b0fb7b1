"""Blendshape-driven avatars against audio-driven ones, on people the speech prior never heard.

On a GPU machine, for each avatar NAME (prepared, under AVATARS): pretrain a speech prior without NAME (leave one
identity out, on the prepared corpus under CORPUS), train two avatars of NAME with the same settings, one driven by
blendshapes (`being train --prior`) and one hearing the audio (today's default), and render their held-out frames:
the prior-driven model, the oracle (the frames' own tracked shapes), silence, and the audio-driven model with its
audio and silenced. Renders come back as JPEG (quality 95) with the image metrics; LMD needs MediaPipe, so it is
finished on the CPU machine:

    python bench/gpu_prior_avatars.py run CORPUS AVATARS OUT --names a,b,c --iterations 3000 --per-gpu 4
    python bench/gpu_prior_avatars.py finish OUT_FILES... --avatars AVATARS --json bench/prior_avatars.json
"""
import argparse, io, json, os, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np

def sh(cmd, env):
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode: raise RuntimeError(f"{' '.join(cmd[:6])}...: {done.stderr[-3000:]}")
    return done.stdout

def one(args, name, drive, gpu):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu), "OMP_NUM_THREADS": "4", "BEING_QUIET": "1"}
    work = Path(args.work)/f"{name}__{drive}"
    if work.exists(): shutil.rmtree(work)
    shutil.copytree(Path(args.avatars)/name, work, ignore=shutil.ignore_patterns("model", "source.mp4"))
    fold = Path(args.work)/"folds"/name
    code = f"""
import json, time, torch
from being_nb.train import train
from being_nb.evaluate import evaluate
t = time.time()
tr = train({work.name!r}, root={str(work.parent)!r}, iterations={args.iterations}, device="cuda", drive={drive!r},
           checkpoint_every=10**9)
secs = time.time() - t
m = evaluate({work.name!r}, root={str(work.parent)!r}, device="cuda", lip=False, video=False,
             prior={str(fold/'prior.pt')!r} if {drive!r} == "blendshapes" else None)
m["train_seconds"] = round(secs, 1)
print(json.dumps(m))
"""
    t = time.time()
    metrics = json.loads(sh([sys.executable, "-c", code], env).strip().splitlines()[-1])
    print(f"{name} {drive}: {time.time() - t:.0f} s", flush=True)
    return metrics

def pack(work: Path, name, out: Path):
    from PIL import Image
    arrays = {}
    for drive in ("blendshapes", "audio"):
        with np.load(work/f"{name}__{drive}"/"model"/"eval_renders.npz") as z:
            for key in z.files:
                if key == "checkpoint": continue
                blobs = []
                for img in z[key]:
                    buf = io.BytesIO(); Image.fromarray(img).save(buf, format="JPEG", quality=95); blobs.append(buf.getvalue())
                arrays[f"{drive}.{key}"] = np.frombuffer(b"".join(blobs), np.uint8)
                arrays[f"{drive}.{key}.offsets"] = np.cumsum([0] + [len(b) for b in blobs])
    np.savez(out/f"{name}_renders.npz", **arrays)

def run(args):
    import torch
    names = args.names.split(",")
    gpus = max(1, torch.cuda.device_count())
    env = {**os.environ, "OMP_NUM_THREADS": "4", "BEING_QUIET": "1"}
    corpus = sorted(d.name for d in Path(args.corpus).iterdir() if (d/"track.npz").exists())
    t0 = time.time()
    with ThreadPoolExecutor(len(names)) as pool:      # the leave-one-out priors (small: CPU threads, one GPU each)
        list(pool.map(lambda kn: sh([sys.executable, "-m", "being_nb.pretrain", *corpus, "--root", args.corpus,
                                     "--output", str(Path(args.work)/"folds"/kn[1]), "--hold-out", kn[1], "--quiet"],
                                    {**env, "CUDA_VISIBLE_DEVICES": str(kn[0] % gpus)}), enumerate(names)))
    print(f"priors: {time.time() - t0:.0f} s", flush=True)
    jobs = [(n, d) for n in names for d in ("blendshapes", "audio")]
    with ThreadPoolExecutor(args.per_gpu*gpus) as pool:
        results = list(pool.map(lambda k: one(args, *jobs[k], k % gpus), range(len(jobs))))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    report = {"gpu": torch.cuda.get_device_name(0), "gpus": gpus, "iterations": args.iterations,
              "avatars": {n: {} for n in names}}
    for (n, d), m in zip(jobs, results): report["avatars"][n][d] = m
    for n in names: pack(Path(args.work), n, out)
    (out/f"metrics_{names[0]}.json").write_text(json.dumps(report, indent=1))

def finish(args):
    "Here (MediaPipe): LMD of every render set against the real held-out frames; merged into one JSON."
    from PIL import Image
    from being_nb.core import AvatarDir
    from being_nb.core import split_frames
    from being_nb.data import FrameCache
    from being_nb.evaluate import mouth_measurements, lip_metrics
    merged = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {"avatars": {}}
    for f in args.files:
        f = Path(f)
        if f.name.startswith("metrics_"):
            rep = json.loads(f.read_text())
            for n, v in rep.pop("avatars").items(): merged["avatars"].setdefault(n, {}).update(v)
            merged.update(rep)
    for f in args.files:
        f = Path(f)
        if not f.name.endswith("_renders.npz"): continue
        name = f.name[:-len("_renders.npz")]
        avatar = AvatarDir(name, args.avatars)
        with np.load(avatar.track) as z: n = len(z["landmarks"])
        _, test = split_frames(n)
        frames = FrameCache(avatar, 512)
        real = np.stack([frames[int(i)][0] for i in test])
        real_pts, real_jaw = mouth_measurements(real)
        from being_nb.data import AvatarData
        from being_nb.evaluate import nearest_training_frames
        nearest = nearest_training_frames(AvatarData(avatar, 512, "cpu"))     # by the avatar's default speech features
        lip = lip_metrics(*mouth_measurements(np.stack([frames[int(i)][0] for i in nearest])), real_pts, real_jaw)
        merged["avatars"][name]["audio"].setdefault("nearest_neighbour", {}).update(lip)
        with np.load(f) as z:
            for key in [k for k in z.files if not k.endswith(".offsets")]:
                data, off = z[key].tobytes(), z[key + ".offsets"]
                imgs = np.stack([np.asarray(Image.open(io.BytesIO(data[a:b]))) for a, b in zip(off[:-1], off[1:])])
                drive, method = key.split(".")
                lip = lip_metrics(*mouth_measurements(imgs), real_pts, real_jaw)
                merged["avatars"][name][drive].setdefault(method, {}).update(lip)
                print(name, drive, method, lip, flush=True)
    Path(args.json).write_text(json.dumps(merged, indent=1))

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run"); r.add_argument("corpus"); r.add_argument("avatars"); r.add_argument("out")
    r.add_argument("--names", required=True); r.add_argument("--iterations", type=int, default=3000)
    r.add_argument("--per-gpu", type=int, default=4); r.add_argument("--work", default="/tmp/prior_avatars")
    f = sub.add_parser("finish"); f.add_argument("files", nargs="+"); f.add_argument("--avatars", required=True)
    f.add_argument("--json", required=True)
    args = p.parse_args()
    run(args) if args.what == "run" else finish(args)
