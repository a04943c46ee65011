#!/usr/bin/env bash
# The measurements that need a CUDA GPU, in one command (about 12 minutes with the defaults):
#   1. env-steps/s of the vector environment on SaccadeMNIST-v0 (bench/env_throughput.py);
#   2. RAM's batched glimpse against a per-sample loop, on the GPU (bench/ram_glimpse.py);
#   3. RAM's shipped recipe on Centered28 and Translated60 for RAM_MINUTES each: iterations/s,
#      and the monitor's test accuracy every 1,000 iterations against wall time (train/ram.py);
#   4. the What/Where Where pathway at 128 channels x 8 layers for WHERE_MINUTES (train/what_where.py).
#
#   bash bench/cuda_suite.sh OUT_DIR [RAM_MINUTES=2] [WHERE_MINUTES=4]
#
# Everything it writes goes under OUT_DIR: *.log, env_throughput.json, the trained
# checkpoints ram-centered28.pt, ram-translated60.pt, what_where.pt (compare them with
# eval/compare_agents.py before copying any into checkpoints/) and their TensorBoard runs.
# SUITE_SMOKE=1 runs the same steps on the CPU at toy sizes (a test of this script, not a benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/cuda_suite.sh OUT_DIR [RAM_MINUTES] [WHERE_MINUTES]}
ram_min=${2:-2}
where_min=${3:-4}
dev=cuda sizes="1024 16384 65536" secs=3 final=10000 scenes=200000 where_eval=2000
if [ "${SUITE_SMOKE:-0}" = 1 ]; then dev=cpu sizes="16 64" secs=0.5 final=200 scenes=2000 where_eval=50; fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "$dev" = cuda ]; then
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    'bench/cuda_suite.sh: this torch sees no CUDA device; run it on a GPU machine (SUITE_SMOKE=1 only tests the script)')"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { tr '\r' '\n' | { grep -av '%|' || true; } | tee "$out/$1"; }  # tqdm's progress lines dropped, the rest kept
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }

stamp "1. environment throughput"
python3 bench/env_throughput.py --env SaccadeMNIST-v0 --devices "$dev" --sizes $sizes --seconds "$secs" \
  --json "$out/env_throughput.json" 2>&1 | log env_throughput.log

stamp "2. RAM glimpse, batched vs per-sample loop"
python3 bench/ram_glimpse.py --device "$dev" --batch 4096 --repeats 3 2>&1 | log ram_glimpse.log

for preset in Centered28 Translated60; do
  tag=$(echo "$preset" | tr 'A-Z' 'a-z')
  stamp "3. RAM on $preset, $ram_min min"
  python3 train/ram.py --env "SaccadeMNIST-$preset-v0" --device "$dev" --max-minutes "$ram_min" --steps 1000000 \
    --eval-every 1000 --final-episodes "$final" --run-name "cuda-ram-$tag" --out "$out/ram-$tag.pt" 2>&1 \
    | log "ram-$tag.log"
done

stamp "4. What/Where: Where at 128 channels x 8 layers, $where_min min"
python3 train/what_where.py --device "$dev" --channels 128 --layers 8 --scenes "$scenes" --steps 30000 \
  --max-minutes "$where_min" --eval-episodes "$where_eval" --name cuda-where --out "$out/what_where.pt" 2>&1 \
  | log what_where.log

cp -r runs/cuda-ram-centered28 runs/cuda-ram-translated60 runs/cuda-where "$out/" 2>/dev/null || true
stamp "done: $out"
