"""Frames packed on a lent GPU come back through a 16 MiB limit a file: `python bench/npz_parts.py split FILE.npz`
writes FILE.part0.npz, FILE.part1.npz ... (whole arrays, each part under 15 MB) and removes FILE.npz; `load(FILE.npz)`
reads FILE.npz or its parts as one {name: array}."""
import sys
from pathlib import Path
import numpy as np

LIMIT = 15_000_000

def split(path, limit:int=LIMIT):
    path = Path(path)
    if path.stat().st_size <= limit: return [path]
    z = np.load(path, allow_pickle=False)
    parts, part, size = [], {}, 0
    for k in z.files:
        a = z[k]
        if part and size + a.nbytes > limit: parts.append(part); part, size = {}, 0
        part[k], size = a, size + a.nbytes
    parts.append(part)
    out = [path.with_name(f"{path.stem}.part{i}.npz") for i in range(len(parts))]
    for p, arrays in zip(out, parts): np.savez(p, **arrays)
    path.unlink()
    return out

def load(path) -> dict:
    path = Path(path)
    files = [path] if path.exists() else sorted(path.parent.glob(f"{path.stem}.part*.npz"))
    if not files: raise FileNotFoundError(f"{path} (nor its parts)")
    out = {}
    for f in files:
        with np.load(f, allow_pickle=False) as z: out.update({k: z[k] for k in z.files})
    return out

if __name__ == "__main__" and sys.argv[1:2] == ["split"]:
    for f in sys.argv[2:]: print(*split(f))
