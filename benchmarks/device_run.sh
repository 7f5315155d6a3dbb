# The GPU runs of issues 14 and 12, as one prepared run on a lent CUDA machine that cannot reach PyPI.
#
# Prepare here (once): the wheels the GPU image lacks, for its Python 3.12, into .whl/ (biopython, coloredlogs,
# cyvcf2, humanfriendly, peft, platformdirs, pyfaidx), and the embedded default's small files into .gpu/default
# (`python benchmarks/random_default.py --pack .gpu/default`); both folders are git-ignored and carried.
# There: `bash benchmarks/device_run.sh [all|recipe]` ($OUT receives the logs). The default model gets random
# weights there (benchmarks/random_default.py says why); the shipped adapter and projector load on top.
#   all     issue 14's benchmarks: predict.py (score-only, traces, decoding), gpu_check.py, batch 256, compile
#   recipe  score-only at batch 64 and 256, then the KEGG recipe (training/recipes/kegg.yaml) as it is, SFT then
#           GRPO, each under a time cap; per-step seconds come from the runs' log.jsonl (RECIPE_CAP_S, default 150)
#   profile the KEGG recipe's SFT and GRPO steps under torch.profiler and cProfile (benchmarks/profile_recipe.py)
set -u
OUT=${OUT:-/tmp/gpuout}; mkdir -p "$OUT"
SITE=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
# pyproject.toml's layout (app/, training/, ... under bioreason.) by links: no build backend needed there
mkdir -p "$SITE/bioreason" && for f in bioreason/*; do ln -sfn "$PWD/$f" "$SITE/bioreason/"; done
for d in app training dna_encoders kegg_data; do ln -sfn "$PWD/$d" "$SITE/bioreason/$d"; done
export PYTHONPATH=$SITE BIOREASON_HOME=/tmp/brhome PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/env.log"
python3 -c "import torch, transformers, peft; print(torch.__version__, transformers.__version__, peft.__version__)" |
  tee -a "$OUT/env.log"
python3 benchmarks/random_default.py --unpack .gpu/default 2>&1 | tail -1 | tee -a "$OUT/env.log"
F="grep -v Warning\|warn\|Loading.weights\|Failed.to.load\|Writing.model"
if [ "${1:-all}" = profile ]; then
  timeout 100 python3 benchmarks/profile_recipe.py sft --steps 3 2>&1 | $F | tee "$OUT/profile_sft.log"
  timeout 100 python3 benchmarks/profile_recipe.py grpo --steps 2 2>&1 | $F | tee "$OUT/profile_grpo.log"
  exit 0
fi
if [ "${1:-all}" = recipe ]; then
  CAP=${RECIPE_CAP_S:-150}
  [ -n "${SKIP_PREDICT:-}" ] || timeout 120 python3 benchmarks/predict.py --n 512 --batch 64 --n-traces 2 --new-tokens 4 --reps 3 2>&1 | $F |
    tee "$OUT/predict_b64.log"
  [ -n "${SKIP_PREDICT:-}" ] || timeout 90 python3 benchmarks/predict.py --n 1024 --batch 256 --n-traces 2 --new-tokens 4 --reps 3 2>&1 | $F |
    tee "$OUT/predict_b256.log"
  R="python3 -P -m bioreason.app.cli train"  # -P: not the checkout's bioreason/ (it lacks app/)
  S=$(date +%s); timeout "$CAP" $R sft --recipe kegg train.output_dir=/tmp/runs/kegg 2>&1 | $F | tail -5 |
    tee "$OUT/recipe_sft.log"; echo "sft wall $(( $(date +%s) - S )) s" | tee -a "$OUT/recipe_sft.log"
  cp /tmp/runs/kegg/log.jsonl "$OUT/recipe_sft_log.jsonl" 2>/dev/null
  # GRPO starts from the shipped kegg-v1 (same architecture) when the cap stopped SFT before its final folder
  I=/tmp/runs/kegg/final; [ -d "$I" ] || I=kegg-v1
  S=$(date +%s); timeout "$CAP" $R grpo --recipe kegg grpo.init="$I" grpo.output_dir=/tmp/runs/kegg-grpo 2>&1 | $F |
    tail -5 | tee "$OUT/recipe_grpo.log"; echo "grpo wall $(( $(date +%s) - S )) s" | tee -a "$OUT/recipe_grpo.log"
  cp /tmp/runs/kegg-grpo/log.jsonl "$OUT/recipe_grpo_log.jsonl" 2>/dev/null
  exit 0
fi
timeout 200 python3 benchmarks/predict.py --n 512 --batch 64 --n-traces 16 --trace-batch 8 --new-tokens 32 \
  --decode-batches 1,8,64 --decode-tokens 64 --reps 3 2>&1 | $F | tee "$OUT/predict.log"
timeout 150 python3 benchmarks/gpu_check.py 2>&1 | $F | tee "$OUT/gpu_check.log"
timeout 90 python3 benchmarks/predict.py --n 1024 --batch 256 --n-traces 2 --new-tokens 4 --reps 3 2>&1 | $F |
  tee "$OUT/predict_b256.log"
timeout 400 python3 benchmarks/compile_decode.py --batches 1,8,64 --steps 64 --reps 3 2>&1 | $F |
  tee "$OUT/compile_decode.log"
