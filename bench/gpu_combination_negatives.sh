#!/usr/bin/env bash
# Combination-aware negatives at GPU budgets, where hard negatives were seen to hurt held-out combinations
# (600 and 1800 steps of 128 pairs): the pretrain stage on this device, then, for each budget in parallel,
# clip once (the reference) and negclip and ce_clip on the keep and the drop table. MLflow is off.
#
# Here (spaCy), after `dvc repro pretrain`:  python bench/combination_negatives.py --work .gpu/cn --tables-only
# There, from the repo root, with .whl (open_clip, pydantic and their needs, where the image lacks them),
# .gpu/cn (its negatives_*/cache and unseen_combinations.jsonl moved out first: 90 MB the GPU does not
# read), data/ingest and data/synth carried (about 50 MB in all):
#   COMPCLIP_GIT_COMMIT=<commit> bash bench/gpu_combination_negatives.sh .gpu/cn OUTDIR 600 1800
# Writes OUTDIR/<NAME>_<steps>steps_gpu.json (after every model) and a log per budget.
#
# Other comparisons on the same path (environment): METHODS (default: clip negclip ce_clip), OPTIONS (more
# options of combination_negatives.py), NAME (default: combination_negatives). Hard positives against negclip
# on the same negatives, brittleness scored (data/positives/positives.parquet and
# data/benchmarks/hard_positives.json carried too):
#   METHODS="clip negclip hard_positive" OPTIONS="--policies drop --shared-negatives" NAME=hard_positives \
#     bash bench/gpu_combination_negatives.sh .gpu/cn OUTDIR 600 1800
set -euo pipefail
if [ $# -lt 2 ] || [ ! -f "$1/negatives_keep/summary.json" ] || [ ! -f "$1/negatives_drop/summary.json" ]; then
  echo "usage: bash bench/gpu_combination_negatives.sh WORK OUTDIR [STEPS...]  (WORK: the tables --tables-only built)" >&2
  exit 2
fi
work=$1 out=$2
shift 2
device=${DEVICE:-cuda} workers=${NUM_WORKERS:-4}
methods=${METHODS:-clip negclip ce_clip} options=${OPTIONS:-} name=${NAME:-combination_negatives}
export COMPCLIP_MLFLOW=0 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if ! python3 -c "import open_clip, pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$out"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"
started=$SECONDS
# params `pretrain`, device auto; resumes from its final checkpoint when models/pretrain already holds it
python3 -m stages.pretrain > "$out/pretrain.log" 2>&1 || { tail -30 "$out/pretrain.log"; exit 1; }
echo "pretrain: $((SECONDS - started)) s"
pids=()
for steps in "${@:-600}"; do
  python3 bench/combination_negatives.py --work "$work" --reuse-tables --device "$device" --batch-size 128 \
    --steps "$steps" --methods $methods --num-workers "$workers" $options \
    --out "$out/${name}_${steps}steps_gpu.json" > "$out/${name}_${steps}steps.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
echo "all budgets: $((SECONDS - started)) s"
for steps in "${@:-600}"; do echo "== $steps steps"; grep -v -E "it/s|s/it|^INFO|Loading" "$out/${name}_${steps}steps.log" | tail -80; done
exit $status
