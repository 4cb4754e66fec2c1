#!/usr/bin/env bash
# NDM's Monte Carlo protocol on one GPU: NDM and LSTM (benchmarks/ndm_paper_protocol.py) and the IC
# baselines (benchmarks/ic_baselines.py) on the four datasets of the paper's Tables 2-3, one process
# each, in parallel, under one deadline. Merge afterwards on any machine:
#   python benchmarks/ndm_paper_protocol.py --merge $OUT/proto_*.json $OUT/ic_*.json
# Env: OUT (results), DATA (folder with forest/; default .carry_data), BUDGET (seconds, default 480),
# TRAIN (max training seconds per model, default 200), RUNS (runs per cascade, default 1000).
set -u
OUT=${OUT:?set OUT}; DATA=${DATA:-.carry_data}; BUDGET=${BUDGET:-480}; TRAIN=${TRAIN:-200}
RUNS=${RUNS:-1000}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} XLA_PYTHON_CLIENT_PREALLOCATE=false OMP_NUM_THREADS=1
# Training runs skip XLA's GPU autotuning: with a dozen processes compiling at once, autotuning
# (which runs candidate kernels on the one shared GPU) kept every job compiling for minutes.
export XLA_FLAGS=${XLA_FLAGS:---xla_gpu_autotune_level=0} JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jc}
mkdir -p "$OUT/logs"
for ds in ndm/irvine ndm/lastfm ndm/memetracker forest/twitter; do
  tag=${ds//\//_}
  for model in ndm lstm; do
    timeout "$BUDGET" python3 benchmarks/ndm_paper_protocol.py --datasets "$ds" --models "$model" \
      --data-dir "$DATA" --workdir /tmp/proto_runs --runs "$RUNS" --max-train-seconds "$TRAIN" \
      --no-progress --out "$OUT/proto_${tag}_${model}.json" > "$OUT/logs/proto_${tag}_${model}.log" 2>&1 &
  done
  timeout "$BUDGET" python3 benchmarks/ic_baselines.py --dataset "$ds" --data-dir "$DATA" \
    --sims "$RUNS" --out "$OUT/ic_${tag}.json" > "$OUT/logs/ic_${tag}.log" 2>&1 &
done
wait
tail -n 3 "$OUT"/logs/*.log
