"""Parity of the two `being_nb.render` back-ends on one GPU: gsplat 1.5.3 (CUDA kernels) against the PyTorch
rasterizer, both on CUDA tensors, over `PARITY_CASES` (random scenes with the hard cases; see nbs/21_render.ipynb).

    TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 PYTHONPATH=<gsplat install>:<repo root> python bench/gpu_parity.py

Prints a table (image/alpha max abs difference, pixels beyond IMAGE_TOL, equal radii and tile lists, gradient
cosines) and render timings, writes $OUT/gpu_parity.json when OUT is set, and exits 1 if a scene fails: a pixel
beyond IMAGE_TOL other than the rare isolated flips at the 1/255 cut-off (at most FLIP_FRACTION of the pixels,
each below FLIP_TOL), a gradient cosine at or below GRAD_COS_MIN, or a gradient norm off by 1 - GRAD_COS_MIN or more."""
import json, os, platform, sys, time

import torch

from being_nb.render import (FLIP_FRACTION, FLIP_TOL, GRAD_COS_MIN, IMAGE_TOL, PARITY_CASES, random_scene, render,
                             run_parity, time_render)

COLUMNS = [("case", 44), ("img max", 9), ("px>tol", 6), ("alpha max", 9), ("radii=", 7), ("isect=", 6),
           ("cos means", 9), ("quats", 8), ("scales", 8), ("opac", 8), ("colors", 8), ("viewmat", 8), ("means2d", 8),
           ("|g| dev", 8), ("ok", 3)]

def case_name(row: dict) -> str:
    flags = [k for k in ("hard", "backgrounds") if row.get(k)] + [row[k] for k in ("render_mode", "rasterize_mode") if k in row]
    return f"{row['n']} G {row['size']}² x{row['n_cameras']} sh={row['sh_degree']} s{row['seed']} {' '.join(flags)}"

def table_row(row: dict) -> str:
    values = [case_name(row), f"{row['image_max_abs']:.2e}", str(row["pixels_over_tol"]), f"{row['alpha_max_abs']:.2e}",
              f"{row['radii_equal']:.5f}", "yes" if row["isects_equal"] else "no"]
    values += [f"{row[f'cos_{k}']:.6f}" for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "means2d")]
    values.append(f"{row['grad_norm_ratio_max_dev']:.1e}")
    values.append("yes" if row["passed"] else "NO")
    return " ".join(v.ljust(w) for v, (_, w) in zip(values, COLUMNS))

def compile_seconds() -> float:
    "gsplat compiles its CUDA code on first use: time that apart from the checks."
    t0 = time.time()
    render(**random_scene(10, 16, 16, device="cuda"), backend="gsplat")
    torch.cuda.synchronize()
    return time.time() - t0

def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_parity.py needs a CUDA device", file=sys.stderr)
        return 2
    import gsplat
    info = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__, gsplat=gsplat.__version__,
                python=platform.python_version(), image_tol=IMAGE_TOL, flip_fraction=FLIP_FRACTION, flip_tol=FLIP_TOL,
                grad_cos_min=GRAD_COS_MIN)
    info["gsplat_first_call_s"] = round(compile_seconds(), 1)
    print(f"{info['gpu']}, torch {info['torch']}, gsplat {info['gsplat']} (first call {info['gsplat_first_call_s']} s)")
    rows = run_parity(PARITY_CASES)
    print(" ".join(name.ljust(w) for name, w in COLUMNS))
    for row in rows: print(table_row(row))
    timings = [dict(backend=b, **time_render(n, size, n_cameras=1, device="cuda", backend=b))
               for b in ("gsplat", "torch") for n, size in ((10_000, 64), (20_000, 128), (100_000, 512))]
    for t in timings: print(t)
    passed = all(row["passed"] for row in rows)
    print(f"{'PASSED' if passed else 'FAILED'}: colours and alphas within {IMAGE_TOL} except at most {FLIP_FRACTION:g} of "
          f"the pixels (cut-off flips, each < {FLIP_TOL}); gradient cosines > {GRAD_COS_MIN}, norms within "
          f"{1 - GRAD_COS_MIN:.0%}")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_parity.json"), "w") as f:
            json.dump(dict(info=info, passed=passed, cases=rows, timings=timings), f, indent=2)
    return 0 if passed else 1

if __name__ == "__main__":
    sys.exit(main())
