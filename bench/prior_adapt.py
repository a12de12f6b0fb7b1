"""Few-shot adaptation of the speech prior (issue 10, InsTaG's idea), measured leave-one-identity-out.

For every prepared avatar under ROOT: pretrain a prior on all the other identities (the shipped settings), then
fine-tune a copy on the held-out person's first 10/11 (their own audio and tracked blendshapes: what `being train`
sees), pulled towards the pretrained weights (L2-SP), and judge both on the person's last 1/11, which neither saw.
Several adaptation settings are tried; a setting must beat the unadapted prior across people, not on one.

    python bench/prior_adapt.py ROOT OUT.json [--timing streaming|centred] [--workers 15]
"""
import argparse, json, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

SETTINGS = [  # (steps, learning rate, pull towards the pretrained weights)
    (100, 3e-4, 1e-3), (300, 3e-4, 1e-3), (300, 1e-3, 1e-3), (300, 3e-4, 1e-2), (300, 3e-4, 0.0), (1000, 3e-4, 1e-3)]

def held_out(prior, clip):
    from being_nb.prior import predict
    from being_nb.core import split_frames
    z = predict(prior.eval(), clip.features, len(clip))
    test = split_frames(len(clip))[1]
    v = test[clip.valid[test]]
    return z[v], clip.targets[v]

def fold(root, names, held, timing, work, gpu):
    torch.set_num_threads(1)
    device = f"cuda:{gpu}" if torch.cuda.is_available() else "cpu"
    from being_nb.core import set_quiet
    from being_nb.prior import clip_from_avatar, STREAMING_AHEAD, CENTRED_AHEAD
    from being_nb.pretrain import PretrainConfig, Pretrainer, build_corpus, DistInfo, pearson, adapt_prior
    from being_nb.face import blendshape_index, SPEECH_INDEX
    set_quiet(True)
    ahead = STREAMING_AHEAD if timing == "streaming" else CENTRED_AHEAD
    clips = {n: clip_from_avatar(Path(root)/n, "mel") for n in names}
    t0 = time.time()
    tr = Pretrainer(build_corpus([clips[n] for n in names if n != held]),
                    PretrainConfig(ahead=ahead, eval_every=10**9, checkpoint_every=10**9),
                    Path(work)/f"{timing}-{held}", DistInfo(device=torch.device(device)))
    tr.run()
    base = tr.prior.eval().cpu()
    jaw = blendshape_index("jawOpen")
    out = {"frames": 0, "seconds_train": round(len(clips[held])*10/11/25, 1), "rows": {}}
    for key, model in [("pretrained", base)] + [
            (f"adapt:{s}:{lr}:{pull}", adapt_prior(base, clips[held], s, lr, pull, device=device).cpu()) for s, lr, pull in SETTINGS]:
        z, t = held_out(model, clips[held])
        out["frames"] = int(len(z))
        out["rows"][key] = {"jaw_r": round(pearson(z[:, jaw], t[:, jaw]), 3),
                            "mouth_mse": round(float(((z - t)[:, SPEECH_INDEX]**2).mean()), 4),
                            "jaw": [z[:, jaw].round(4).tolist(), t[:, jaw].round(4).tolist()]}
    out["seconds"] = round(time.time() - t0, 1)
    return held, out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("out")
    ap.add_argument("--timing", default="streaming", choices=("streaming", "centred"))
    ap.add_argument("--workers", type=int, default=15)
    ap.add_argument("--work", default="/tmp/prior_adapt")
    args = ap.parse_args()
    from being_nb.pretrain import pearson
    names = sorted(d.name for d in Path(args.root).iterdir() if (d/"features"/"mel.npy").exists())
    gpus = max(1, torch.cuda.device_count())
    with ProcessPoolExecutor(args.workers, mp_context=__import__("multiprocessing").get_context("spawn")) as pool:
        results = dict(pool.map(fold, *zip(*[(args.root, names, h, args.timing, args.work, i % gpus)
                                             for i, h in enumerate(names)])))
    keys = list(next(iter(results.values()))["rows"])
    summary = {}
    for k in keys:
        rows = [r["rows"][k] for r in results.values()]
        z = np.concatenate([r["jaw"][0] for r in rows]); t = np.concatenate([r["jaw"][1] for r in rows])
        summary[k] = {"mean_jaw_r": round(float(np.mean([r["jaw_r"] for r in rows])), 3),
                      "pooled_jaw_r": round(pearson(z, t), 3),
                      "mean_mouth_mse": round(float(np.mean([r["mouth_mse"] for r in rows])), 4),
                      "better_r_in": sum(r["rows"][k]["jaw_r"] > r["rows"]["pretrained"]["jaw_r"] for r in results.values())}
    report = {"timing": args.timing, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "identities": names, "summary": summary, "folds": results}
    Path(args.out).write_text(json.dumps(report))
    print(f"| setting ({args.timing}) | mean jawOpen r | pooled r | mouth MSE (z) | r better than pretrained in |")
    print("|---|---|---|---|---|")
    for k, s in summary.items():
        print(f"| {k} | {s['mean_jaw_r']} | {s['pooled_jaw_r']} | {s['mean_mouth_mse']} | {s['better_r_in']}/{len(names)} |")

if __name__ == "__main__":
    main()
