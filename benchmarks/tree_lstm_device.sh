#!/usr/bin/env bash
# Tree-LSTM speed on the device machine (one H100), <= 285 s in all: JAX variants (impl x unroll x
# chunk width) of levelwise_tree_lstm against the PyTorch anchors, on the first 256 Twitter15 trees
# and on all 1,490. Trees: $TWITTER15_TAR (default .carry_trees/data/twitter15_tree.tar.gz, a
# git-ignored carry folder). Results (partial ones too): $OUT/tree_lstm_speed.json, logs, and the
# optimized HLO of every variant in $OUT/hlo.tgz. Run from the repository root:
#   bash benchmarks/tree_lstm_device.sh   (TREE_ARGS / SCALING_ARGS append arguments: a CPU smoke test)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tree_lstm_out}
mkdir -p "$OUT/hlo"
export TWITTER15_TAR=${TWITTER15_TAR:-.carry_trees/data/twitter15_tree.tar.gz}
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.55 PYTHONUNBUFFERED=1
export POPDIFF_COMMIT=${POPDIFF_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
VARIANTS=${VARIANTS:-level:1,vjp:1}
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu.txt" 2>&1
timeout 105 python3 benchmarks/tree_lstm.py --trees 256 --chunks 4096 256 \
  --variants "$VARIANTS" --max_full_unroll 32 --repeats 5 --budget_s 90 --max_pad_ratio 3 \
  --hlo_dir "$OUT/hlo" --out "$OUT/tree_lstm_speed.json" ${TREE_ARGS:-} > "$OUT/log_256.txt" 2>&1
echo "256 trees: rc $?"
timeout 140 python3 benchmarks/tree_lstm.py --trees 0 --chunks 4096 8192 256 \
  --variants "$VARIANTS" --max_full_unroll 32 --repeats 5 --budget_s 120 --max_pad_ratio 3 \
  --hlo_dir "$OUT/hlo" --append --out "$OUT/tree_lstm_speed.json" ${TREE_ARGS:-} > "$OUT/log_all.txt" 2>&1
echo "all trees: rc $?"
# Step cost vs N at fixed C (is a step O(C·H) or O(N·H) on the GPU?).
timeout 35 python3 benchmarks/tree_lstm_scaling.py --chunk 4096 --ks 8 32 128 --budget_s 22 \
  --out "$OUT/tree_lstm_step_scaling_gpu.json" ${SCALING_ARGS:-} > "$OUT/log_scaling.txt" 2>&1
echo "scaling: rc $?"
tar czf "$OUT/hlo.tgz" -C "$OUT" hlo && rm -rf "$OUT/hlo"
tail -n 30 "$OUT/log_256.txt"
tail -n 30 "$OUT/log_all.txt"
cat "$OUT/log_scaling.txt"
