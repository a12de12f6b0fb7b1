#!/usr/bin/env bash
# The lent-GPU side of bench/speech_front_gpu.md, in one call: install the carried wheels, train the prepared Obama
# avatar (carried in .carry/sf) with the CUDA defaults on the features the machine can compute (Whisper when
# transformers is there, else mel), then render every level/music case raw and through the speech front into $OUT.
set -eu
export PYTHONPATH=/tmp/site:$PWD:$PWD/.carry/pkgs BEING_QUIET=1 PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export BEING_AUDIO_ENCODER=$PWD/.carry/models/whisper-tiny.en-encoder
if python3 -c "import transformers" 2>/dev/null; then enc=whisper-tiny.en-encoder; else enc=mel; fi
python3 -c "import av" 2>/dev/null && echo "PyAV present" || echo "no PyAV"
echo "features: $enc"; nvidia-smi --query-gpu=name --format=csv,noheader
rm -rf /tmp/av && mkdir -p /tmp/av && cp -r .carry/sf/obama /tmp/av/obama
t0=$SECONDS
python3 -c "
from being_nb.train import train
t = train('obama', root='/tmp/av', device='cuda', encoder='$enc', iterations=${ITER:-8000})
print('trained', t.step_count, 'steps')"
echo "train seconds: $((SECONDS - t0))"
python3 bench/speech_front.py render --root /tmp/av --avatar obama --cases .carry/sf/cases.npz --device cuda --out $OUT
cp /tmp/av/obama/model/config.json $OUT/obama_config.json
ls -la $OUT
