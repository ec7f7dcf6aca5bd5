#!/usr/bin/env bash
# A separate virtual environment for Data-Juicer's perplexity_filter (bench/dj_perplexity.py).
#
# py-data-juicer pulls in a very large dependency tree (datasets, streamlit, ...); the op needs
# little of it. This installs the package without its dependencies, then only what importing
# the op and running it on a Hugging Face dataset needs. Usage, from the repository root:
#
#     bash bench/setup_datajuicer.sh            # creates bench/out/venv-dj (git-ignored)
#
# Override the interpreter with PYTHON=..., the folder with DJ_VENV=...
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
DJ_VENV=${DJ_VENV:-bench/out/venv-dj}
DJ_VERSION=${DJ_VERSION:-1.6.1}

"$PYTHON" -m venv "$DJ_VENV"
pip="$DJ_VENV/bin/pip"
"$pip" install --quiet --upgrade pip
"$pip" install --quiet --no-deps "py-data-juicer==$DJ_VERSION"
# What `from data_juicer.ops.filter.perplexity_filter import PerplexityFilter`, a NestedDataset
# and `op.run` import (found by importing until nothing was missing; ray because importing
# data_juicer.core would otherwise install it on the spot; versions pinned where
# py-data-juicer pins them), the op's models (kenlm, sentencepiece), and pyarrow.
"$pip" install --quiet \
    kenlm sentencepiece ray \
    loguru datasets pyarrow pandas numpy pillow beautifulsoup4 tabulate tomli aiohttp \
    "emoji==2.2.0" "dill==0.3.8" "multiprocess==0.70.16" \
    jsonargparse jsonlines pydantic regex tqdm wget zstandard lz4 psutil requests httpx
# Data-Juicer installs missing modules on first use (its LazyLoader runs pip): op.run frees
# models through torch at the end, which would pull the CUDA build (several GB). Install the CPU
# build first: the local wheel where pip finds one, else PyTorch's CPU index.
"$pip" install --quiet "torch==2.13.0+cpu" 2>/dev/null ||
    "$pip" install --quiet torch --index-url https://download.pytorch.org/whl/cpu
"$DJ_VENV/bin/python" -c "import data_juicer, kenlm, sentencepiece, torch; print('data-juicer', data_juicer.__version__, 'torch', torch.__version__)"
