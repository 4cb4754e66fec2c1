#!/usr/bin/env bash
# ndm_next_user.py on a GPU machine: one process per (dataset, model), several at a time on the one
# GPU, merged at the end into $OUT/ndm_next_user.json. Datasets other than the embedded ndm/ ones are
# read from $DATA (a git-ignored carry folder with forest/ and infvae/). Every run gets a time budget
# (BUDGET seconds, compilation included; the epoch in progress ends early) and a hard timeout of
# BUDGET + 120 s, so that the whole call fits the device limit.
# XLA compiles take minutes of CPU per training run (one program per bucket): with more than ~8
# processes on a 16-core host none of them gets past compilation, so keep PAR <= 8. The jobs are
# started in the order given: put the long ones (ndm/lastfm, memetracker) first.
# train_seconds are measured with up to $PAR processes sharing the GPU and its host's cores.
# .carry_whl/ holds a tqdm wheel for machines without it.
#
# What runs: JOBS="dataset:model ..." where model is ndm, lstm, popularity or the name of a variant
# in VARIANTS (a JSON object {name: NextUserConfig overrides}); the variant rows are NDM rows named
# after the variant. Without JOBS: every dataset of DATASETS x every model of MODELS.
#   DATA=.carry_data BUDGET=240 PAR=7 bash benchmarks/ndm_next_user_device.sh
#   JOBS="ndm/lastfm:lstm ndm/lastfm:ndm-reg" VARIANTS='{"ndm-reg": {"weight_decay": 1.0}}' ...
# CPU smoke test:
#   JOBS="ndm/irvine:popularity ndm/irvine:tiny" VARIANTS='{"tiny": {"dim": 8, "num_heads": 2}}' \
#   XLA_FLAGS= EXTRA="--epochs 1" BUDGET=30 PAR=2 OUT=/tmp/smoke bash benchmarks/ndm_next_user_device.sh
set -u
DATA=${DATA:-.carry_data}; BUDGET=${BUDGET:-240}; PAR=${PAR:-7}; OUT=${OUT:-/tmp/out}
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/jaxcache} XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
# Training runs: no GEMM autotuning (it costs compile time on a busy host; recorded in the meta).
export XLA_FLAGS=${XLA_FLAGS---xla_gpu_autotune_level=0}  # XLA_FLAGS= (empty) for a CPU smoke test
python3 -c "import tqdm" 2>/dev/null || python3 -m pip install -q --no-index --no-deps .carry_whl/*.whl
mkdir -p $OUT/parts
export VARIANTS=${VARIANTS:-'{"ndm-reg": {"bias_init": "log_frequency", "weight_decay": 1.0}}'}
# TOTAL > 0: a deadline for the whole call (seconds from now): a job started late gets
# min(BUDGET, what is left - 75) seconds and a hard timeout before the deadline; none starts with
# less than 40 s left. The merge at the end takes a few seconds.
export START=$(date +%s) TOTAL=${TOTAL:-0}
export DATA BUDGET OUT EXTRA=${EXTRA:-}  # EXTRA: more ndm_next_user.py arguments, e.g. "--epochs 1"
if [ -z "${JOBS:-}" ]; then
  DATASETS=${DATASETS:-ndm/memetracker ndm/irvine ndm/lastfm forest/twitter forest/memetracker infvae/christianity infvae/android}
  MODELS=${MODELS:-ndm lstm popularity ndm-reg}
  JOBS=""
  for d in $DATASETS; do for m in $MODELS; do JOBS="$JOBS $d:${m/#reg/ndm-reg}"; done; done
fi
printf '%s\n' $JOBS | xargs -P $PAR -L 1 bash -c '
  d=${0%%:*}; m=${0#*:}; tag=${d/\//_}_$m
  case $m in
    ndm|lstm|popularity) args=(--models $m) ;;
    *) cfg=$(python3 -c "import json,os,sys; print(json.dumps(json.loads(os.environ[\"VARIANTS\"])[sys.argv[1]]))" $m) || exit 1
       args=(--models --variant "$m=$cfg") ;;
  esac
  b=$BUDGET; hard=$((BUDGET + 120))
  if [ $TOTAL -gt 0 ]; then
    left=$((START + TOTAL - $(date +%s)))
    [ $((left - 75)) -lt $b ] && b=$((left - 75))
    [ $((left - 15)) -lt $hard ] && hard=$((left - 15))
    [ $b -lt 40 ] && { echo "$tag skipped: ${left}s left"; exit 0; }
  fi
  timeout $hard python3 benchmarks/ndm_next_user.py --data-dir $DATA --datasets $d \
    "${args[@]}" --max-train-seconds $b --no-progress --workdir /tmp/nu_$tag \
    --out $OUT/parts/$tag.json $EXTRA > $OUT/parts/$tag.log 2>&1; echo "$tag rc=$? budget=$b $(date +%T)"'
ls $OUT/parts/*.json >/dev/null 2>&1 && python3 benchmarks/ndm_next_user.py --combine $OUT/parts/*.json --out $OUT/ndm_next_user.json
