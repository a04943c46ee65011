#!/usr/bin/env bash
# The measurements that need a CUDA GPU, in one command (budgeted at about 6.5 minutes with the
# defaults, not yet timed on a GPU; each step is cut off by `timeout`, 9.5 minutes in all at the
# very most, so that a slow one cannot eat the others' time):
#   1. env-steps/s of the vector environment on SaccadeMNIST-v0 (bench/env_throughput.py);
#   2. RAM's batched glimpse against a per-sample loop, on the GPU (bench/ram_glimpse.py);
#   3. RAM's shipped recipe on Centered28 and Translated60 for RAM_MINUTES each: iterations/s,
#      and the monitor's test accuracy every 1,000 iterations against wall time (train/ram.py);
#   4. the What/Where Where pathway at 128 channels x 8 layers for WHERE_MINUTES, its accuracy
#      map and training scenes included (train/what_where.py).
#
#   bash bench/cuda_suite.sh OUT_DIR [RAM_MINUTES=1] [WHERE_MINUTES=2]
#
# Everything it writes goes under OUT_DIR: *.log, env_throughput.json, the trained
# checkpoints ram-centered28.pt, ram-translated60.pt, what_where.pt (compare them with
# eval/compare_agents.py before copying any into checkpoints/) and runs.tar.gz, their
# TensorBoard runs. A step that fails or runs out of time is reported and the next one runs;
# the exit status is then 1. To carry the results off a machine as one file:
#   bash bench/cuda_suite.sh /tmp/suite; tar czf suite.tar.gz -C /tmp suite
# SUITE_SMOKE=1 runs the same steps on the CPU at toy sizes (a test of this script, not a benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/cuda_suite.sh OUT_DIR [RAM_MINUTES] [WHERE_MINUTES]}
ram_min=${2:-1}
where_min=${3:-2}
dev=cuda sizes="4096 32768 131072" secs=2 final=10000 scenes=100000 where_eval=2000
if [ "${SUITE_SMOKE:-0}" = 1 ]; then dev=cpu sizes="16 64" secs=0.5 final=200 scenes=2000 where_eval=50; fi
# each step's time limit, s: its own work plus start-up, the final evaluation and some slack
# (defaults: 90 + 60 + 2 x 120 + 180 s = 9.5 min at the very most, inside a 10-minute command limit)
lim_env=90 lim_glimpse=60 lim_ram=$(awk "BEGIN{print int($ram_min*60+60)}") lim_where=$(awk "BEGIN{print int($where_min*60+60)}")
if [ "${SUITE_SMOKE:-0}" = 1 ]; then lim_env=600 lim_glimpse=600 lim_ram=600 lim_where=600; fi  # a CPU is slower
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "$dev" = cuda ]; then
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else
    'bench/cuda_suite.sh: this torch sees no CUDA device; run it on a GPU machine (SUITE_SMOKE=1 only tests the script)')"
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { tr '\r' '\n' | { grep -av '%|' || true; } | tee "$out/$1"; }  # tqdm's progress lines dropped, the rest kept
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
failed=""
step() {  # step LOGFILE SECONDS COMMAND...: run COMMAND under a time limit, log it, go on if it fails
  local file=$1 secs=$2; shift 2
  local rc=0
  timeout --signal=INT --kill-after=20 "$secs" "$@" 2>&1 | log "$file" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "== step $file exited with status $rc$( [ "$rc" = 124 ] && echo " (its ${secs} s limit)")" | tee -a "$out/$file"
    failed="$failed $file"
  fi
}

stamp "1. environment throughput"
step env_throughput.log "$lim_env" python3 bench/env_throughput.py --env SaccadeMNIST-v0 --devices "$dev" \
  --sizes $sizes --seconds "$secs" --json "$out/env_throughput.json"

stamp "2. RAM glimpse, batched vs per-sample loop"
step ram_glimpse.log "$lim_glimpse" python3 bench/ram_glimpse.py --device "$dev" --batch 4096 --repeats 3

for preset in Centered28 Translated60; do
  tag=$(echo "$preset" | tr 'A-Z' 'a-z')
  stamp "3. RAM on $preset, $ram_min min"
  step "ram-$tag.log" "$lim_ram" python3 train/ram.py --env "SaccadeMNIST-$preset-v0" --device "$dev" \
    --max-minutes "$ram_min" --steps 1000000 --eval-every 1000 --final-episodes "$final" --run-name "cuda-ram-$tag" \
    --out "$out/ram-$tag.pt"
done

stamp "4. What/Where: Where at 128 channels x 8 layers, $where_min min"
step what_where.log "$lim_where" python3 train/what_where.py --device "$dev" --channels 128 --layers 8 \
  --scenes "$scenes" --steps 30000 --max-minutes "$where_min" --eval-episodes "$where_eval" --name cuda-where \
  --out "$out/what_where.pt"

runs=$(for r in cuda-ram-centered28 cuda-ram-translated60 cuda-where; do [ -d "runs/$r" ] && echo "$r"; done || true)
[ -n "$runs" ] && tar czf "$out/runs.tar.gz" -C runs $runs
if [ -n "$failed" ]; then stamp "done, with failed steps:$failed: $out"; exit 1; fi
stamp "done: $out"
