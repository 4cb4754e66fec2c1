#!/usr/bin/env bash
# ndm_next_user.py on a GPU machine: one process per (dataset, model), several at a time on the one
# GPU, merged at the end into $OUT/ndm_next_user.json. Datasets other than the embedded ndm/ ones are
# read from $DATA (a git-ignored carry folder with forest/ and infvae/). Every run gets a time budget
# (BUDGET seconds; the epoch in progress ends early) so that the whole call fits the device limit.
# XLA compiles take ~6 CPU-minutes per training run (one program per bucket), so keep PAR near
# 16 cores / 2. train_seconds are measured with up to $PAR processes sharing the GPU and its host's cores.
# .carry_whl/ holds a tqdm wheel for machines without it.
#   DATA=.carry_data BUDGET=400 PAR=14 bash benchmarks/ndm_next_user_device.sh
set -u
DATA=${DATA:-.carry_data}; BUDGET=${BUDGET:-400}; PAR=${PAR:-14}; OUT=${OUT:-/tmp/out}
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
python3 -c "import tqdm" 2>/dev/null || python3 -m pip install -q --no-index --no-deps .carry_whl/*.whl
mkdir -p $OUT/parts
export REG='{"bias_init": "log_frequency", "weight_decay": 1.0}' DATA BUDGET OUT
jobs=()
DATASETS=${DATASETS:-ndm/memetracker ndm/irvine ndm/lastfm forest/twitter forest/memetracker infvae/christianity infvae/android}
MODELS=${MODELS:-ndm lstm popularity reg}
for d in $DATASETS; do
  for m in $MODELS; do jobs+=("$d $m"); done
done
printf '%s\n' "${jobs[@]}" | xargs -P $PAR -L 1 bash -c '
  d=$0; m=$1; tag=${d/\//_}_$m
  if [ $m = reg ]; then args=(--models --variant "ndm-reg=$REG"); else args=(--models $m); fi
  timeout $((BUDGET + 150)) python3 benchmarks/ndm_next_user.py --data-dir $DATA --datasets $d \
    "${args[@]}" --max-train-seconds $BUDGET --no-progress --workdir /tmp/nu_$tag \
    --out $OUT/parts/$tag.json > $OUT/parts/$tag.log 2>&1; echo "$tag rc=$?"'
python3 benchmarks/ndm_next_user.py --combine $OUT/parts/*.json --out $OUT/ndm_next_user.json
