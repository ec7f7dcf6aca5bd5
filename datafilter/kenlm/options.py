"""The options of ``train-kenlm`` and ``import-kenlm`` (and the run config's ``train_kenlm:``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from datafilter.kenlm.normalize import NormalizationRecipe, recipe_by_name
from datafilter.kenlm.train import KenlmTrainingOptions
from datafilter.registry import as_list, parse_options


class RecipeChoice(BaseModel):
    """A normalisation recipe by name, with some of its flags changed."""

    model_config = ConfigDict(extra="forbid")

    recipe: str = Field(
        "ccnet", description="normalisation recipe: ccnet (CCNet's exactly) or datafilter-v1"
    )
    norm: dict[str, Any] = Field(
        {},
        description="normalisation flag over the recipe's, e.g. lowercase=false",
        json_schema_extra={"metavar": "FLAG=VALUE"},
    )

    def normalization(self) -> NormalizationRecipe:
        """The recipe named, with the ``norm`` flags changed (checked strictly)."""
        values = {**recipe_by_name(self.recipe).model_dump(), **self.norm}
        return parse_options(NormalizationRecipe, values, "normalisation")  # type: ignore[return-value]


class TrainKenlmOptions(RecipeChoice):
    """``datafilter train-kenlm``, and the ``train_kenlm:`` section of a run config.

    ``options.normalization`` (a whole recipe, in a config) wins over ``recipe``/``norm``."""

    input: list[str] = Field(description="Parquet files or folders, or .txt files")
    output: str = Field(description="model folder to write")

    _one_input = field_validator("input", mode="before")(as_list)
    text_columns: list[str] = Field(
        ["text"], description="text column(s)", json_schema_extra={"flag": "--text-column"}
    )
    options: KenlmTrainingOptions = KenlmTrainingOptions()
    overwrite: bool = Field(False, description="replace a model folder (only a model folder)")

    def training(self) -> KenlmTrainingOptions:
        """The training options, with the normalisation of ``recipe`` and ``norm`` unless
        ``options.normalization`` was given."""
        if "normalization" in self.options.model_fields_set:
            return self.options
        return self.options.model_copy(update={"normalization": self.normalization()})


class ImportKenlmOptions(RecipeChoice):
    """``datafilter import-kenlm``."""

    kenlm: str = Field(description="KenLM model: binary (.bin) or ARPA (.arpa)")
    sentencepiece: str = Field(description="the SentencePiece model (.model)")
    output: str = Field(description="model folder to write")
    binary_type: Literal["probing", "trie"] = Field(
        "probing", description="what build_binary builds from an ARPA file"
    )
    sample: str | None = Field(
        None, description="text file in the model's language for the smoke score"
    )
    overwrite: bool = Field(False, description="replace a model folder (only a model folder)")
