"""A KenLM model folder: binary n-gram model, SentencePiece model and the recipe beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from datafilter.errors import ModelError
from datafilter.kenlm.normalize import DATAFILTER_V1_RECIPE, NormalizationRecipe

RECIPE_FILE = "recipe.json"
FORMAT = "datafilter-kenlm"
# 2: the normalisation lists every flag (``ccnet`` became the default). A version-1 recipe's
# normalisation lacks the flags added since, and was the datafilter-v1 recipe in them.
FORMAT_VERSION = 2
_V1_FLAGS = {
    key: getattr(DATAFILTER_V1_RECIPE, key) for key in ("punctuation_table", "non_printing")
}


def without_nul(line: str) -> str:
    """A normalised line as KenLM and SentencePiece get it, in training and in scoring: NUL
    characters dropped (kept by a recipe that keeps control characters, they would be read as
    the end of a word by kenlm's Python module but not by the native scorer)."""
    return line.replace("\x00", "") if "\x00" in line else line


class KenlmRecipe(BaseModel):
    """Everything needed to score text the way the model's training text was prepared."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["datafilter-kenlm"] = FORMAT
    format_version: int = FORMAT_VERSION
    order: int
    vocab_size: int
    binary_file: str = "model.bin"
    binary_type: Literal["probing", "trie"] = "probing"
    tokenizer_file: str = "tokenizer.model"
    normalization: NormalizationRecipe
    # sha256 of the model files: identifies the model, so retraining in place is noticed.
    checksums: dict[str, str] = {}
    training: dict[str, Any] = {}
    # Set by ``import-kenlm``: the source files and the fit checks they passed.
    imported: dict[str, Any] = {}
    # What the model was trained on: clean reference text (train-kenlm), the corpus itself, or
    # unknown (imported); the band selector's default criterion follows it.
    reference_kind: Literal["clean_reference", "corpus", "unknown"] = "unknown"

    @model_validator(mode="before")
    @classmethod
    def _version_1_normalization(cls, data: Any) -> Any:
        """A version-1 recipe's normalisation gets the datafilter-v1 values of the newer flags."""
        if (
            isinstance(data, dict)
            and data.get("format_version", 1) == 1
            and isinstance(data.get("normalization"), dict)
        ):
            data = {**data, "normalization": {**_V1_FLAGS, **data["normalization"]}}
        return data


def load_recipe(model_dir: str | Path) -> KenlmRecipe:
    """Read and check a model folder; a ModelError says what is missing or malformed."""
    folder = Path(model_dir).expanduser()
    recipe_path = folder / RECIPE_FILE
    if not folder.is_dir():
        raise ModelError(
            f"KenLM model folder {folder} does not exist (train one: datafilter train-kenlm)"
        )
    if not recipe_path.is_file():
        raise ModelError(
            f"{folder} has no {RECIPE_FILE}: not a complete datafilter KenLM model folder (a "
            "KenLM model and its SentencePiece model become one with: datafilter import-kenlm)"
        )
    try:
        recipe = KenlmRecipe.model_validate(json.loads(recipe_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelError(f"{recipe_path}: malformed recipe ({exc})") from None
    for name in (recipe.binary_file, recipe.tokenizer_file):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: {name} named in {RECIPE_FILE} is missing")
    return recipe
