#!/usr/bin/env bash
# The lent-GPU side of bench/serve.md (issue 13). `start` (first call): install the carried wheels (.whl) and packages
# (.carry/pkgs), copy the code and the prepared avatars in .carry/serve to /tmp (the working tree is laid anew at every
# call), and launch `run` in the background: compile gsplat, train every avatar in $NAMES at once with the CUDA
# defaults (one GPU; each run alone leaves it mostly idle; NAME:prior trains a blendshape-driven avatar, `being train
# --prior`, and renders its puppet and controls frames for bench/puppet.py and bench/controls.py to read here; NEW=SRC:prior
# trains a second avatar NEW on a copy of SRC's prepared folder, made there: the carry holds one copy), then run
# bench/serve_bench.py on each ($SERVE: only these; with $TICKCOSTS batch sizes: one tick's parts timed alone, $BUDGETS Gaussian budgets; sessions $SESSIONS,
# the server's GIL switch intervals $SWITCH, ServeConfig variants $VARIANTS; $SPEED empty: streaming only). `collect [N]` (later calls): wait up to N x 5 s, then copy the results and
# logs into $OUT.
set -u
W=/tmp/w; mkdir -p $W
export PYTHONPATH=/tmp/site:$W/code:$W/code/.carry/pkgs BEING_QUIET=1 PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
case "$1" in
start)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  rm -rf $W/code $W/av && mkdir -p $W/code $W/av $W/out
  cp -r being_nb bench .carry $W/code/ && cp -r .carry/serve/* $W/av/
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__)"
  python3 -c "import torchvision; print('torchvision', torchvision.__version__)" || echo "no torchvision"
  [ -n "${VARIANTS:-}" ] || VARIANTS='[{}]'        # (not a ${VARIANTS:-...} default: its braces end the expansion)
  setsid nohup env ITER=${ITER:-10000} NAMES="${NAMES:-obama woman8}" SESSIONS="${SESSIONS:-1,16,32,48,64,96}" \
      SWITCH="${SWITCH:-}" VARIANTS="$VARIANTS" SPEED="${SPEED:-}" SERVE="${SERVE:-}" TICKCOSTS="${TICKCOSTS:-}" BUDGETS="${BUDGETS:-}" bash $W/code/bench/device_serve.sh run > $W/log.txt 2>&1 < /dev/null &
  echo "started: $(ls $W/av | paste -sd ' ')" ;;
run)
  cd $W/code
  python3 -c "import torch, gsplat; d = dict(device='cuda'); m = torch.zeros(1, 3, **d); m[:, 2] = 5
gsplat.rasterization(m, torch.tensor([[1., 0, 0, 0]], **d), torch.full((1, 3), .1, **d), torch.ones(1, **d),
  torch.ones(1, 3, **d), torch.eye(4, **d)[None], torch.tensor([[[99., 0, 32], [0, 99, 32], [0, 0, 1]]], **d), 64, 64)
print('gsplat compiled')"
  t0=$SECONDS
  for spec in $NAMES; do
    name=${spec%%:*}; drive=audio; [ "$spec" != "${spec%:prior}" ] && drive=blendshapes
    if [ "$name" != "${name%%=*}" ]; then src=${name#*=}; name=${name%%=*}; rm -rf $W/av/$name
      mkdir $W/av/$name && (cd $W/av/$src && cp -r $(ls | grep -v '^model$') $W/av/$name/); fi
    python3 -c "
from being_nb.train import train
t = train('$name', root='$W/av', device='cuda', encoder='mel', iterations=$ITER, threads=6, drive='$drive')
print('trained $name', t.step_count, 'steps')" > $W/train_$name.log 2>&1 &
  done
  wait
  echo "train ($NAMES, at once): $((SECONDS - t0)) s"
  for spec in $NAMES; do
    name=${spec%%:*}; name=${name%%=*}
    tail -n 3 $W/train_$name.log
    if [ "$spec" != "${spec%:prior}" ]; then
      python3 bench/puppet.py $W/av $name $W/out/puppet_$name.npz --render-only --device cuda --size 0
      python3 bench/controls.py $W/av $name --render-only $W/out/controls_$name.npz --device cuda --size 0
    fi
  done
  for spec in ${SERVE:-$NAMES}; do
    name=${spec%%:*}
    cp $W/av/$name/model/config.json $W/out/${name}_config.json; cp $W/av/$name/model/metrics.json $W/out/${name}_metrics.json 2>/dev/null
    python3 bench/serve_bench.py $W/av $name $W/out/serve_gpu_$name.json --device cuda --sessions $SESSIONS \
        --seconds 8 --batches 1,16,64 --jpeg auto --switch-interval "$SWITCH" --variants "$VARIANTS" ${SPEED:---skip-speed} \
        --tick-costs "$TICKCOSTS" --budgets "$BUDGETS"
  done
  echo "ALL DONE" ;;
collect)
  # at most 8 files come back: the frames (npz) each, everything else in one tar (refreshed as it goes: a call cut
  # short still brings back what was measured)
  # (frames over 15 MB are split into parts first: bench/npz_parts.py; the scripts read a file's parts as one)
  keep() { for f in $W/out/*.npz; do [ -e "$f" ] && python3 $W/code/bench/npz_parts.py split "$f" > /dev/null; done
           cp $W/out/*.npz $OUT/ 2>/dev/null; cp $W/log.txt $W/out/; (cd $W/out && tar cf $OUT/results.tar $(ls | grep -v '\.npz$')); }
  for i in $(seq 1 ${2:-110}); do grep -q "ALL DONE" $W/log.txt && break; sleep 5; [ $((i % 6)) = 0 ] && keep; done
  tail -n 60 $W/log.txt
  keep
  ls -la $OUT ;;
esac
