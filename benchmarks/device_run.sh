# The GPU benchmarks of issue 14, as one prepared run on a lent CUDA machine that cannot reach PyPI.
#
# Prepare here (once): the wheels the GPU image lacks, for its Python 3.12, into .whl/ (biopython, coloredlogs,
# cyvcf2, humanfriendly, peft, platformdirs, pyfaidx), and the embedded default's small files into .gpu/default
# (`python benchmarks/random_default.py --pack .gpu/default`); both folders are git-ignored and carried.
# There: `bash benchmarks/device_run.sh` ($OUT receives the logs). The default model gets random weights there
# (benchmarks/random_default.py says why); the shipped adapter and projector load on top.
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
F="grep -v Warning\|warn\|Loading.weights\|Failed.to.load"
timeout 200 python3 benchmarks/predict.py --n 512 --batch 64 --n-traces 16 --trace-batch 8 --new-tokens 32 \
  --decode-batches 1,8,64 --decode-tokens 64 --reps 3 2>&1 | $F | tee "$OUT/predict.log"
timeout 150 python3 benchmarks/gpu_check.py 2>&1 | $F | tee "$OUT/gpu_check.log"
timeout 90 python3 benchmarks/predict.py --n 1024 --batch 256 --n-traces 2 --new-tokens 4 --reps 3 2>&1 | $F |
  tee "$OUT/predict_b256.log"
timeout 400 python3 benchmarks/compile_decode.py --batches 1,8,64 --steps 64 --reps 3 2>&1 | $F |
  tee "$OUT/compile_decode.log"
