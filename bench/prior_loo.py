"""Leave-one-identity-out evaluation of the speech prior, and 1 vs N GPU pretraining.

For every prepared avatar under ROOT (one identity each) and every feature set asked for, pretrain a prior on all
the other identities (`python -m being_nb.pretrain ... --hold-out NAME`), then judge it on the held-out person's
own clip: jawOpen Pearson r and best lag against their tracking, mouth-shape MAE, the speech-energy and
constant-mean baselines, and jawOpen in silence (digital silence and -50 dBFS noise, in the corpus's typical range:
what `being blendshapes` prints for a stranger). Folds run as parallel processes spread over the visible GPUs.

    python bench/prior_loo.py ROOT OUT --variants mel,whisper-tiny.en-encoder,mel:raw --steps 3000 --workers 8
Writes OUT/prior_loo.json (every fold) and prints a markdown summary.
"""
import argparse, json, os, subprocess, sys, time, wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from being_nb.prior import load_prior, predict, clip_from_avatar, speech_weights
from being_nb.pretrain import judge_prior
from being_nb.face import blendshape_index

def read_wav(path):
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)/32768

def fold(args, names, held, variant, gpu):
    features, _, mode = variant.partition(":")
    out = Path(args.work or args.out)/"folds"/variant.replace(":", "-").replace("=", "")/held
    env = {**os.environ, "OMP_NUM_THREADS": "2", "BEING_QUIET": "1", "CUDA_VISIBLE_DEVICES": str(gpu)}
    cmd = [sys.executable, "-m", "being_nb.pretrain", *names, "--root", args.root, "--output", str(out),
           "--features", features, "--steps", str(args.steps), "--hold-out", held, "--quiet"]
    for opt in filter(None, mode.split(":")):          # "raw", or key=value settings of `being pretrain`
        key, _, value = opt.partition("=")
        cmd += ["--raw-targets"] if key == "raw" else [f"--{key.replace('_', '-')}", value]
    if (out/"prior.pt").is_file(): return out, 0.0           # already trained (a rerun judges only)
    t = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode: raise RuntimeError(f"{variant} {held}: {done.stderr[-2000:]}")
    return out, time.time() - t

def silence_jaw(prior, encoder):
    rng = np.random.default_rng(0)
    jaw = blendshape_index("jawOpen")
    quiet = speech_weights(prior, encoder, np.zeros(32000, np.float32))[:, jaw]
    noise = speech_weights(prior, encoder, (rng.standard_normal(32000)*10**(-50/20)).astype(np.float32))[:, jaw]
    return round(float(quiet.max()), 4), round(float(noise.max()), 4)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("root"); p.add_argument("out")
    p.add_argument("--variants", default="mel")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--work", help="where the folds write their priors (default OUT)")
    p.add_argument("--encoder", help="folder of the transformers speech encoder (for the silence test)")
    args = p.parse_args()
    names = sorted(d.name for d in Path(args.root).iterdir() if (d/"track.npz").exists())
    gpus = max(1, torch.cuda.device_count())
    jobs = [(v, h) for v in args.variants.split(",") for h in names]
    results = {}
    t0 = time.time()
    with ThreadPoolExecutor(args.workers) as pool:
        futures = {pool.submit(fold, args, names, h, v, k % gpus): (v, h) for k, (v, h) in enumerate(jobs)}
        for f, (v, h) in futures.items():
            out, secs = f.result()
            results.setdefault(v, {})[h] = {"seconds": round(secs, 1), "folder": str(out)}
            print(f"{v} {h}: {secs:.0f} s", flush=True)
    from being_nb.audio import load_audio_encoder
    encoders = {}
    for v, folds in results.items():
        features = v.partition(":")[0]
        if features not in encoders:
            encoders[features] = load_audio_encoder("mel" if features == "mel" else args.encoder)
        for h, r in folds.items():
            prior = load_prior(Path(r["folder"])/"prior.pt")
            clip = clip_from_avatar(Path(args.root)/h, features)
            r.update(judge_prior(prior, clip, read_wav(Path(args.root)/h/"audio.wav")))
            r["silence_jaw"], r["noise_jaw"] = silence_jaw(prior, encoders[features])
            r["seconds_of_speech"] = round(len(clip)/25, 1)
            del r["folder"]
    report = {"machine": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "gpus": gpus, "steps": args.steps, "wall_s": round(time.time() - t0, 1), "identities": names,
              "variants": results}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out)/"prior_loo.json").write_text(json.dumps(report, indent=1))
    for v, folds in results.items():
        print(f"\n### {v}\n| held out | s | jaw r | lag | r best | energy r | mouth MAE | mean MAE | silence jaw |\n|---|---|---|---|---|---|---|---|---|")
        for h, r in folds.items():
            print(f"| {h} | {r['seconds_of_speech']} | {r['jaw_r']} | {r['jaw_lag']} | {r['jaw_r_best']} | {r['energy_jaw_r']} | "
                  f"{r['mouth_mae']} | {r['mouth_mae_mean']} | {r['silence_jaw']} |")
        m = lambda k: np.mean([r[k] for r in folds.values()])
        print(f"| **mean** | | {m('jaw_r'):.3f} | | {m('jaw_r_best'):.3f} | {m('energy_jaw_r'):.3f} | {m('mouth_mae'):.4f} | {m('mouth_mae_mean'):.4f} | {max(r['silence_jaw'] for r in folds.values()):.3f} |")

if __name__ == "__main__": main()
