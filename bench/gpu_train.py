"""Train and evaluate one prepared avatar on a GPU within a wall-clock budget, and time it.

    python bench/gpu_train.py AVATARS_ROOT NAME BUDGET_SECONDS [OUT_DIR [FEATURES [ITERATIONS [TIMING]]]]  # train + evaluate
      (ITERATIONS: a fixed count, to match an earlier run, instead of the probe; TIMING: window_ahead,neighbours_ahead)
    python bench/gpu_train.py --eval AVATARS_ROOT NAME OUT_DIR               # evaluate a trained model on the GPU
    python bench/gpu_train.py --unpack OUT_DIR/NAME_renders.npz AVATAR_DIR  # here: reuse the GPU's renders

A short probe measures the step time, then the iteration count is chosen so that training fits the budget
(the stage schedule depends on the total, so it must be known up front). Evaluation runs without MediaPipe
and PyAV (not on the GPU machine): it renders and times the held-out frames; LMD and the side-by-side video
are finished on a CPU machine with `being eval NAME --no-fps`, which reuses the cached renders."""
import io, json, shutil, sys, time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from being_nb.core import AvatarDir
from being_nb.train import Trainer, TrainConfig
from being_nb.evaluate import evaluate

def seconds_per_step(avatar, steps=120) -> float:
    "Median-ish step time over the motion-field stage (the costliest), measured on a throwaway trainer."
    cfg = TrainConfig.for_device("cuda", iterations=10 * steps, stages=(0.0, 1.0, 0.0, 0.0), checkpoint_every=10**9)
    t = Trainer(avatar, cfg, "cuda")
    for _ in range(20): t.train_step()                  # warm-up: kernels, caches
    torch.cuda.synchronize(); t0 = time.perf_counter()
    for _ in range(steps): t.train_step()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps

def pack_renders(avatar, path: Path):
    "The cached held-out renders as quality-100 JPEGs (the raw cache is too large to fetch from the GPU machine)."
    with np.load(avatar.model_dir / "eval_renders.npz") as z:
        arrays = {"checkpoint": z["checkpoint"]}
        for method in ("model", "silent"):
            blobs = []
            for img in z[method]:
                buf = io.BytesIO(); Image.fromarray(img).save(buf, format="JPEG", quality=100); blobs.append(buf.getvalue())
            arrays[method] = np.frombuffer(b"".join(blobs), np.uint8)
            arrays[method + "_offsets"] = np.cumsum([0] + [len(b) for b in blobs])
    np.savez(path, **arrays)

def unpack_renders(path: Path, avatar):
    "Rebuild model/eval_renders.npz from `pack_renders` output, so `being eval --no-fps` reuses the GPU renders."
    with np.load(path) as z:
        out = {"checkpoint": z["checkpoint"]}
        for method in ("model", "silent"):
            data, offsets = z[method].tobytes(), z[method + "_offsets"]
            out[method] = np.stack([np.asarray(Image.open(io.BytesIO(data[a:b]))) for a, b in zip(offsets[:-1], offsets[1:])])
    np.savez_compressed(avatar.model_dir / "eval_renders.npz", **out)

if __name__ == "__main__" and sys.argv[1] == "--unpack":
    unpack_renders(Path(sys.argv[2]), AvatarDir.from_path(sys.argv[3]))
elif __name__ == "__main__" and sys.argv[1] == "--eval":          # evaluate an already trained model
    root, name, out = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    metrics = evaluate(name, root=root, device="cuda", lip=False, video=False)
    print(json.dumps(metrics, indent=1))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}_metrics.json").write_text(json.dumps(metrics, indent=1))
    pack_renders(AvatarDir(name, root), out / f"{name}_renders.npz")
elif __name__ == "__main__":
    root, name, budget = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    out = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    features = sys.argv[5] if len(sys.argv) > 5 else None        # which features/<name>.npy (default: the pretrained encoder's)
    fixed = int(sys.argv[6]) if len(sys.argv) > 6 else None      # an iteration count to match an earlier run (no probe)
    timing = dict(zip(("window_ahead", "neighbours_ahead"), map(int, sys.argv[7].split(",")))) if len(sys.argv) > 7 else {}
    avatar = AvatarDir(name, root)
    shutil.rmtree(avatar.model_dir, ignore_errors=True)
    if fixed: iterations = fixed
    else:
        step_s = seconds_per_step(avatar)
        iterations = int(budget / (1.15 * step_s)) // 100 * 100
        print(f"probe: {1000 * step_s:.1f} ms/step -> {iterations} iterations for {budget:.0f} s", flush=True)
    cfg = TrainConfig.for_device("cuda", iterations=iterations, checkpoint_every=max(500, iterations // 4), **timing)
    t0 = time.time()
    trainer = Trainer(avatar, cfg, "cuda", encoder=features)
    last = trainer.run()
    train_s = time.time() - t0
    metrics = evaluate(name, root=root, device="cuda", lip=False, video=False)
    report = {"avatar": name, "gpu": torch.cuda.get_device_name(), "iterations": iterations, "features": features,
              "timing": [cfg.window_ahead, cfg.neighbours_ahead],
              "train_seconds": round(train_s, 1), "ms_per_step": round(1000 * train_s / iterations, 2),
              "last_step": last, "metrics": metrics, "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
    print(json.dumps(report, indent=1))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}_report.json").write_text(json.dumps(report, indent=1))
        pack_renders(avatar, out / f"{name}_renders.npz")                 # finish `being eval` (lip metrics) on the CPU
        for f in ("model.pt", "metrics.json", "metrics.jsonl", "config.json"):
            shutil.copyfile(avatar.model_dir / f, out / f"{name}_{f}")
