"""A KenLM model folder: binary n-gram model, SentencePiece model and the recipe beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from datafilter.errors import ModelError
from datafilter.normalize import NormalizationRecipe

RECIPE_FILE = "recipe.json"
FORMAT = "datafilter-kenlm"


def without_nul(line: str) -> str:
    """A normalised line as KenLM and SentencePiece get it, in training and in scoring: NUL
    characters dropped (kept by a recipe that keeps control characters, they would be read as
    the end of a word by kenlm's Python module but not by the native scorer)."""
    return line.replace("\x00", "") if "\x00" in line else line


class KenlmRecipe(BaseModel):
    """Everything needed to score text the way the model's training text was prepared."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["datafilter-kenlm"] = FORMAT
    format_version: int = 1
    order: int
    vocab_size: int
    binary_file: str = "model.bin"
    binary_type: Literal["probing", "trie"] = "probing"
    tokenizer_file: str = "tokenizer.model"
    normalization: NormalizationRecipe
    # sha256 of the model files: identifies the model, so retraining in place is noticed.
    checksums: dict[str, str] = {}
    training: dict[str, Any] = {}


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
            f"{folder} has no {RECIPE_FILE}: not a complete datafilter KenLM model folder"
        )
    try:
        recipe = KenlmRecipe.model_validate(json.loads(recipe_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelError(f"{recipe_path}: malformed recipe ({exc})") from None
    for name in (recipe.binary_file, recipe.tokenizer_file):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: {name} named in {RECIPE_FILE} is missing")
    return recipe
