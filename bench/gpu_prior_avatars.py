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

PRIORS = ("streaming", "streaming_adapted", "centred", "centred_adapted")   # what drives a blendshape-driven avatar

def one(args, name, drive, gpu):
    device = "cuda" if args.device == "cuda" else "cpu"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu), "OMP_NUM_THREADS": "4", "BEING_QUIET": "1",
           "BEING_PRIOR": str(Path(args.work)/"folds"/f"{name}-{args.timing}"/"prior.pt")}    # adapted by `train`
    work = Path(args.work)/f"{name}__{drive}"
    if work.exists(): shutil.rmtree(work)
    shutil.copytree(Path(args.avatars)/name, work, ignore=shutil.ignore_patterns("model", "source.mp4"))
    folds = Path(args.work)/"folds"
    timing = {"streaming": (4, 0), "centred": (8, 4)}[args.timing]      # motion.STREAMING / motion.CENTRED
    code = f"""
import json, shutil, time, torch
from pathlib import Path
from being_nb.core import AvatarDir
from being_nb.train import train
from being_nb.evaluate import evaluate
from being_nb.prior import load_prior, clip_from_avatar, save_prior
from being_nb.pretrain import adapt_prior
root, name, drive, folds = {str(work.parent)!r}, {work.name!r}, {drive!r}, Path({str(folds)!r})
t = time.time()
tr = train(name, root=root, iterations={args.iterations}, device={device!r}, drive=drive, checkpoint_every=10**9,
           window_ahead={timing[0]}, neighbours_ahead={timing[1]})
secs = time.time() - t
av = AvatarDir(name, root)
out = {{}}
if drive == "audio":
    out["audio"] = evaluate(name, root=root, device={device!r}, lip=False, video=False)
else:
    other = {{"streaming": "centred", "centred": "streaming"}}[{args.timing!r}]
    fold = lambda timing: folds/f"{name}-{{timing}}"/"prior.pt"
    t2 = time.time()
    adapted = adapt_prior(load_prior(fold(other), {device!r}), clip_from_avatar(av.path, "mel"), device={device!r})
    save_prior(adapted, av.model_dir/f"adapted_{{other}}.pt", adapted.card)
    adapt_secs = time.time() - t2
    priors = {{{args.timing!r}: fold({args.timing!r}), {args.timing!r} + "_adapted": av.adapted_prior,
              other: fold(other), other + "_adapted": av.model_dir/f"adapted_{{other}}.pt"}}
    for key, prior in priors.items():
        out[key] = evaluate(name, root=root, device={device!r}, lip=False, video=False, prior=str(prior))
        shutil.copyfile(av.eval_renders, av.model_dir/f"renders_{{key}}.npz")
    out["adapt_seconds"] = round(adapt_secs, 1)
out["train_seconds"] = round(secs, 1)
print(json.dumps(out))
"""
    t = time.time()
    metrics = json.loads(sh([sys.executable, "-c", code], env).strip().splitlines()[-1])
    print(f"{name} {drive}: {time.time() - t:.0f} s", flush=True)
    return metrics

def pack(work: Path, name, drives, out: Path):
    "Every render set of `name`'s avatars as JPEG (quality 95): `drive.method` (blendshapes: `prior key/method`)."
    from PIL import Image
    arrays = {}
    def add(key, images):
        blobs = []
        for img in images:
            buf = io.BytesIO(); Image.fromarray(img).save(buf, format="JPEG", quality=95); blobs.append(buf.getvalue())
        arrays[key] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[key + ".offsets"] = np.cumsum([0] + [len(b) for b in blobs])
    for drive in drives:
        model_dir = work/f"{name}__{drive}"/"model"
        files = sorted(model_dir.glob("renders_*.npz")) if drive == "blendshapes" else [model_dir/"eval_renders.npz"]
        for f in files:
            prior = f.stem[len("renders_"):] if drive == "blendshapes" else "audio"
            with np.load(f) as z:
                for key in z.files:
                    if key == "checkpoint" or (key == "oracle" and prior != PRIORS[0]): continue
                    add(f"{drive}.{prior}/{key}", z[key])
    np.savez(out/f"{name}_renders.npz", **arrays)

def run(args):
    import torch
    names = args.names.split(",")
    gpus = max(1, torch.cuda.device_count())
    env = {**os.environ, "OMP_NUM_THREADS": "4", "BEING_QUIET": "1"}
    corpus = sorted(d.name for d in Path(args.corpus).iterdir() if (d/"track.npz").exists())
    t0 = time.time()
    folds = [(n, t) for n in names for t in ("streaming", "centred")]
    folds = [f for f in folds if not (Path(args.work)/"folds"/f"{f[0]}-{f[1]}"/"prior.pt").is_file()]   # made earlier
    with ThreadPoolExecutor(max(1, len(folds))) as pool:      # the leave-one-out priors (small: one GPU each)
        list(pool.map(lambda k: sh([sys.executable, "-m", "being_nb.pretrain", *corpus, "--root", args.corpus, "--output",
                                    str(Path(args.work)/"folds"/f"{folds[k][0]}-{folds[k][1]}"), "--hold-out", folds[k][0],
                                    "--timing", folds[k][1], "--quiet", "--threads", "2"]
                                   + ([] if args.device == "cuda" else ["--device", "cpu", "--steps", str(args.prior_steps)]),
                                   {**env, "CUDA_VISIBLE_DEVICES": str(k % gpus)}), range(len(folds))))
    print(f"priors: {time.time() - t0:.0f} s", flush=True)
    drives = args.drives.split(",")
    jobs = [(n, d) for n in names for d in drives]
    with ThreadPoolExecutor(args.per_gpu*gpus) as pool:
        results = list(pool.map(lambda k: one(args, *jobs[k], k % gpus), range(len(jobs))))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    report = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "gpus": gpus,
              "iterations": args.iterations, "timing": args.timing,
              "avatars": {n: {} for n in names}}
    for (n, d), m in zip(jobs, results): report["avatars"][n][d] = m
    for n in names: pack(Path(args.work), n, drives, out)
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
        merged["avatars"][name].setdefault("nearest_neighbour", {}).update(lip)
        with np.load(f) as z:
            for key in [k for k in z.files if not k.endswith(".offsets")]:
                data, off = z[key].tobytes(), z[key + ".offsets"]
                imgs = np.stack([np.asarray(Image.open(io.BytesIO(data[a:b]))) for a, b in zip(off[:-1], off[1:])])
                drive, rest = key.split(".", 1)               # "blendshapes.centred_adapted/model", "audio.audio/silent"
                prior, method = rest.split("/")
                lip = lip_metrics(*mouth_measurements(imgs), real_pts, real_jaw)
                merged["avatars"][name][drive].setdefault(prior, {}).setdefault(method, {}).update(lip)
                print(name, drive, prior, method, lip, flush=True)
    Path(args.json).write_text(json.dumps(merged, indent=1))

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run"); r.add_argument("corpus"); r.add_argument("avatars"); r.add_argument("out")
    r.add_argument("--names", required=True); r.add_argument("--iterations", type=int, default=3000)
    r.add_argument("--per-gpu", type=int, default=4); r.add_argument("--work", default="/tmp/prior_avatars")
    r.add_argument("--drives", default="blendshapes,audio"); r.add_argument("--timing", default="streaming")
    r.add_argument("--device", default="cuda"); r.add_argument("--prior-steps", type=int, default=1200)
    f = sub.add_parser("finish"); f.add_argument("files", nargs="+"); f.add_argument("--avatars", required=True)
    f.add_argument("--json", required=True)
    args = p.parse_args()
    run(args) if args.what == "run" else finish(args)
