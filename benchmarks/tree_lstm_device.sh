#!/usr/bin/env bash
# Tree-LSTM speed on the device machine (one H100), <= 330 s in all: the JAX variants against the
# PyTorch anchors on the first 64 and 256 Twitter15 trees and on all 1,490: one step per level
# (`level`, `levelx`; chunk width 64 / 256 only sets the padding) and the scan the training step
# uses (`vjp`, C = 4096). Trees: $TWITTER15_TAR (default .carry_trees/data/twitter15_tree.tar.gz, a
# git-ignored carry folder). Results (partial ones too): $OUT/tree_lstm_speed.json, logs, and the
# optimized HLO of every variant in $OUT/hlo.tgz. Run from the repository root:
#   bash benchmarks/tree_lstm_device.sh   (TREE_ARGS appends arguments: a CPU smoke test)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/tree_lstm_out}
mkdir -p "$OUT/hlo"
export TWITTER15_TAR=${TWITTER15_TAR:-.carry_trees/data/twitter15_tree.tar.gz}
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.55 PYTHONUNBUFFERED=1
export POPDIFF_COMMIT=${POPDIFF_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
LEVEL=${LEVEL_VARIANTS:-level:1,levelx:1}
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu.txt" 2>&1
common=(--max_full_unroll 32 --repeats 5 --max_pad_ratio 3 --hlo_dir "$OUT/hlo"
        --out "$OUT/tree_lstm_speed.json")
timeout 160 python3 benchmarks/tree_lstm.py --trees 64 256 --chunks 64 --variants "$LEVEL" \
  --budget_s 150 "${common[@]}" ${TREE_ARGS:-} > "$OUT/log_level_64_256.txt" 2>&1
echo "64/256 trees, level: rc $?"
timeout 120 python3 benchmarks/tree_lstm.py --trees 0 --chunks 256 --variants "$LEVEL" \
  --budget_s 110 --append "${common[@]}" ${TREE_ARGS:-} > "$OUT/log_level_all.txt" 2>&1
echo "all trees, level: rc $?"
timeout 60 python3 benchmarks/tree_lstm.py --trees 256 0 --chunks 4096 --variants vjp:1 \
  --budget_s 50 --append "${common[@]}" ${TREE_ARGS:-} > "$OUT/log_vjp.txt" 2>&1
echo "vjp: rc $?"
tar czf "$OUT/hlo.tgz" -C "$OUT" hlo && rm -rf "$OUT/hlo"
for f in "$OUT"/log_*.txt; do tail -n 14 "$f"; done
