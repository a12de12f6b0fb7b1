#!/usr/bin/env bash
# The lent-GPU side of bench/prior_avatars.md (adapted priors), in steps, because the seven prepared 512 px avatars
# do not fit one call's 64 MiB: `start SET` (first call: install the carried wheels, start SET in the background),
# `add SET` (later calls: start another set), `collect` (wait, then pack everything into $OUT).
set -u
W=/tmp/w; mkdir -p $W
export PYTHONPATH=/tmp/site:$PWD BEING_QUIET=1 PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=12
case "$1" in
start)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  cp -r .carry/corpus $W/corpus
  # compile gsplat's CUDA code once, here: parallel jobs compiling it at once break each other's build folder
  python3 -c "import torch, gsplat; d = dict(device='cuda'); m = torch.zeros(1, 3, **d); m[:, 2] = 5
gsplat.rasterization(m, torch.tensor([[1., 0, 0, 0]], **d), torch.full((1, 3), .1, **d), torch.ones(1, **d),
  torch.ones(1, 3, **d), torch.eye(4, **d)[None], torch.tensor([[[99., 0, 32], [0, 99, 32], [0, 0, 1]]], **d), 64, 64)
print('gsplat compiled')" || exit 1 ;&
add)
  set_dir=.carry/$2; mkdir -p $W/av; cp -r $set_dir/* $W/av/; cp -r bench $W/bench_code 2>/dev/null
  names=$(ls $set_dir | paste -sd,)
  n=$(ls $set_dir | wc -l)
  setsid nohup python3 bench/gpu_prior_avatars.py run $W/corpus $W/av $W/out_$2 --names $names --iterations 3000 \
      --per-gpu $n --drives blendshapes --timing centred --work $W/work > $W/log_$2.txt 2>&1 < /dev/null &
  echo "started $2: $names" ;;
collect)
  for i in $(seq 1 ${2:-110}); do pgrep -f "gpu_prior_avatars.py run" > /dev/null || break; sleep 5; done
  pgrep -f "gpu_prior_avatars.py run" > /dev/null && { echo "still running"; for f in $W/log_*.txt; do tail -n 3 $f; done; exit 3; }
  for f in $W/log_*.txt; do tail -n 20 $f; done
  (cd $W && tar cf $OUT/metrics.tar out_*/metrics_*.json log_*.txt)
  for f in $W/out_*/*_renders.npz; do cp $f $OUT/; done
  ls -la $OUT ;;
esac
