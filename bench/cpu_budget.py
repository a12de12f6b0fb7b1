"""Gaussian budgets for CPU serving: render time of one frame and fidelity against drawing every Gaussian.

python bench/cpu_budget.py ROOT NAME OUT.json [--budgets 0,20000,12000,8000,5000] [--sizes 128,96] [--threads 2]

For each output size and budget (0: every Gaussian) an `Engine(..., gaussians=budget)` renders a synthesized
sentence the avatar never heard (offline TTS), one frame per call as a live session does; the frame time is the
median of the calls. Fidelity is PSNR against the full model's frames at the same size, over the whole frame
and over the pixels speech moves (where the full model's frames vary by more than 4/255 over the sentence: the
mouth and jaw), where losing Gaussians would show first.
"""
import argparse, json, platform, time
import numpy as np, torch

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--budgets", default="0,20000,12000,8000,5000")
    ap.add_argument("--sizes", default="128,96")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=40)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from being_nb.inference import Engine
    from being_nb.tts import synthesize
    from being_nb.cli import DEMO_SENTENCE
    speech = synthesize(DEMO_SENTENCE).audio
    rows = []
    for size in [int(s) for s in a.sizes.split(",")]:
        full = None
        for budget in [int(b) for b in a.budgets.split(",")]:
            t0 = time.perf_counter()
            e = Engine(a.name, a.root, "cpu", size=size, gaussians=budget or None)
            load_s = time.perf_counter() - t0
            feats = e.features(speech)
            n = min(a.frames, max(1, round(len(speech)*25/16000)))
            steps = list(range(n))
            x = e.inputs(feats, steps, round(len(speech)*25/16000))
            with torch.no_grad():
                frames = torch.cat([e.render([j], x[j:j + 1]) for j in steps]).float()
                times = []
                for j in steps:
                    t = time.perf_counter(); e.render([j], x[j:j + 1]); times.append(time.perf_counter() - t)
            if full is None: full, moving = frames, frames.std(0).amax(-1) > 4
            mse = ((frames - full)**2).mean().item()
            mse_moving = ((frames - full)**2).mean(-1)[:, moving].mean().item()
            rows.append({"size": size, "budget": budget or None, "gaussians": e.budget.drawn, "of": e.budget.total,
                         "share_of_drawing": round(e.budget.share, 4), "frame_ms_median": round(1000*float(np.median(times)), 1),
                         "frame_ms_p90": round(1000*float(np.quantile(times, 0.9)), 1),
                         "psnr_vs_all": None if mse == 0 else round(10*np.log10(255**2/mse), 2),
                         "psnr_moving_vs_all": None if mse_moving == 0 else round(10*np.log10(255**2/mse_moving), 2),
                         "moving_pixels": int(moving.sum()), "load_s": round(load_s, 1)})
            print(rows[-1], flush=True)
    out = {"machine": f"{platform.processor() or platform.machine()}, {a.threads} torch threads", "torch": torch.__version__,
           "avatar": a.name, "text": DEMO_SENTENCE, "frames": a.frames, "rows": rows}
    json.dump(out, open(a.out, "w"), indent=1)

if __name__ == "__main__": main()
