"""Does `torch.compile` help inference? Times the parts of `Engine.render` for a trained avatar, eager and with
the motion field + deformation compiled (inductor, and inductor with CUDA graphs), at the batch sizes the server
forms, and checks the compiled frames equal the eager ones.

    python bench/compile_bench.py ROOT NAME OUT.json [--device cuda] [--batches 1,2,4,16]

The rasteriser (gsplat) is left eager: its tile lists change size every frame, which CUDA graphs cannot hold."""
import argparse, json, time
from pathlib import Path
import numpy as np
import torch
from being_nb.inference import Engine

def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()

def per_call_ms(fn, device, seconds=1.5):
    for _ in range(3): fn()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds: fn(); n += 1
    sync(device)
    return 1000*(time.perf_counter() - t0)/n

def inputs_for(engine, b):
    audio = np.random.default_rng(0).standard_normal((8*16000,)).astype(np.float32)*0.1
    features = engine.features(audio)
    return engine.inputs(features, range(b), 200)

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", default="1,2,4,16")
    args = ap.parse_args()
    engine = Engine(args.name, args.root, args.device)
    model, device = engine.model, engine.device
    batches = [int(b) for b in args.batches.split(",")]
    expression = lambda b: engine.replay.expression[:b]
    report = {"avatar": args.name, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "gaussians": len(model.head["means"]) + len(model.mouth["means"]), "rows": []}
    eager_motion = model.gaussians
    variants = {"eager": eager_motion,
                "inductor": torch.compile(eager_motion, dynamic=False),
                "inductor+cudagraphs": torch.compile(eager_motion, mode="reduce-overhead", dynamic=False)}
    if device.type != "cuda": del variants["inductor+cudagraphs"]
    reference = {}
    for name, fn in variants.items():
        model.gaussians = fn
        for b in batches:
            x, e = inputs_for(engine, b), expression(b)
            t0 = time.perf_counter()
            with torch.no_grad(): fn(x, e, batched=True)
            sync(device)
            first_s = time.perf_counter() - t0
            with torch.no_grad():
                motion_ms = per_call_ms(lambda: fn(x, e, batched=True), device)
            frame_ms = per_call_ms(lambda: engine.render(range(b), x), device)
            frames = engine.render(range(b), x).int()
            if name == "eager": reference[b] = frames
            row = {"variant": name, "batch": b, "first_call_s": round(first_s, 1), "motion_ms": round(motion_ms, 3),
                   "render_ms": round(frame_ms, 3), "fps": round(1000*b/frame_ms, 1),
                   "max_diff_vs_eager": int((frames - reference[b]).abs().max())}
            print(json.dumps(row), flush=True)
            report["rows"].append(row)
    model.gaussians = eager_motion
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
