#!/usr/bin/env bash
# Popularity benchmark on the device machine: one process per (paper, seed), merged at the end.
# Layout expected beside it (a git-ignored carry folder, never committed): popdiff_jax/, benchmarks/,
# wheels/ (vaderSentiment and tqdm wheels) and data/instagram_likes/UserData.tar.gz (read in place).
# Run from that folder: `LIM=425 bash benchmarks/popularity_device.sh`; results land in $OUT.
set -u
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps wheels/*.whl 2>&1 | tail -1
export POPDIFF_DATA_DIR=$PWD/data XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p parts
nvidia-smi --query-gpu=name --format=csv,noheader > parts/gpu.txt
LIM=${LIM:-430}
for s in 0 1 2; do
  timeout $LIM python3 benchmarks/popularity.py --papers multimodal_smp --seeds $s --n-jobs 2 \
    --workdir /tmp/w_smp$s --out parts/smp_$s.json > parts/smp_$s.log 2>&1 &
  timeout $LIM python3 benchmarks/popularity.py --papers fusion_dnn --seeds $s \
    --workdir /tmp/w_fus$s --out parts/fusion_$s.json > parts/fusion_$s.log 2>&1 &
  timeout $LIM python3 benchmarks/popularity.py --papers dual_attention --seeds $s --n-jobs 2 \
    --da-dim 512 --da-epochs 5 --lda-iter 5 \
    --workdir /tmp/w_da$s --out parts/dual_$s.json > parts/dual_$s.log 2>&1 &
done
wait
ls parts
for p in smp fusion dual; do
  python3 benchmarks/popularity.py --merge parts/${p}_*.json --out parts/merged_$p.json > parts/merge_$p.log 2>&1
done
python3 benchmarks/popularity.py --merge parts/merged_smp.json parts/merged_fusion.json parts/merged_dual.json --out $OUT/popularity.json 2>&1 | tail -80
tar czf $OUT/parts.tar.gz parts
