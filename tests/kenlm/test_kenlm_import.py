"""import-kenlm: a KenLM binary or ARPA file and its SentencePiece model become a model folder
that scores as the trained folder does; pairs that do not fit are refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import kenlm
import numpy as np
import pyarrow.parquet as pq
import pytest
import sentencepiece as spm

from datafilter import cli, progress
from datafilter.errors import ModelError
from datafilter.kenlm.importer import import_kenlm, read_kenlm_file
from datafilter.kenlm.model import load_recipe
from datafilter.kenlm.normalize import CCNET_RECIPE, NormalizationRecipe, normalize_lines
from datafilter.kenlm.tools import ensure_kenlm_tools
from datafilter.scorers import make_scorer

RAW = NormalizationRecipe(lowercase=False, strip_accents=False, digits_to_zero=False)


def _quiet(_message: str) -> None:
    pass


@pytest.fixture
def run_cli():
    """``cli.main``; ``-q`` turns progress bars off for the process: back on afterwards."""
    yield cli.main
    progress.set_enabled(None)


def _scores(folder: Path, texts: list[str], **options):
    scorer = make_scorer("kenlm", {"model": str(folder), **options})
    scorer.setup()
    return scorer.score_batch(texts)


@pytest.fixture(scope="module")
def pool_texts(demo_corpus) -> list[str]:
    return pq.read_table(demo_corpus.pool_dir, columns=["text"])["text"].to_pylist()[:300]


@pytest.fixture(scope="module")
def reference_texts(demo_corpus) -> list[str]:
    return pq.read_table(demo_corpus.reference_dir, columns=["text"])["text"].to_pylist()[:400]


def _train_pair(
    folder: Path, texts: list[str], recipe: NormalizationRecipe, vocab_size: int
) -> tuple[Path, Path]:
    """A SentencePiece model and a 3-gram ARPA estimated on its pieces, as CCNet trains them."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [line for text in texts for line in normalize_lines(text, recipe)]
    (folder / "text.txt").write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(folder / "text.txt"),
        model_prefix=str(folder / "sp"),
        vocab_size=vocab_size,
        model_type="unigram",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(folder / "sp.model"))
    pieces = "".join(" ".join(p) + "\n" for p in sp.encode(lines, out_type=str))
    (folder / "pieces.txt").write_text(pieces)
    lmplz = ensure_kenlm_tools(log=_quiet).lmplz
    subprocess.run(
        [str(lmplz), "-o", "3", "-S", "128M", "-T", str(folder), "--discount_fallback"]
        + ["--text", str(folder / "pieces.txt"), "--arpa", str(folder / "lm.arpa")],
        check=True,
        capture_output=True,
    )
    return folder / "lm.arpa", folder / "sp.model"


@pytest.fixture(scope="module")
def arpa_pair(tmp_path_factory, reference_texts) -> tuple[Path, Path]:
    return _train_pair(tmp_path_factory.mktemp("arpa"), reference_texts, CCNET_RECIPE, 800)


def test_imported_binary_scores_as_the_trained_folder(kenlm_model_dir, pool_texts, tmp_path):
    recipe = import_kenlm(
        kenlm_model_dir / "model.bin",
        kenlm_model_dir / "tokenizer.model",
        tmp_path / "imported",
        log=_quiet,
    )
    trained = load_recipe(kenlm_model_dir)
    assert recipe.normalization == trained.normalization == CCNET_RECIPE
    assert recipe.checksums == trained.checksums
    assert (recipe.order, recipe.vocab_size) == (trained.order, trained.vocab_size)
    fit = recipe.imported["fit"]
    assert fit["problems"] == [] and fit["kenlm_words_in_sentencepiece"] == 1.0
    assert fit["pieces_in_kenlm"] > 0.95 and fit["pieces_changed_by_recipe"] == 0.0
    assert load_recipe(tmp_path / "imported") == recipe
    for mode in ("per_line", "ccnet_compat"):
        mine = _scores(tmp_path / "imported", pool_texts, mode=mode)
        theirs = _scores(kenlm_model_dir, pool_texts, mode=mode)
        assert np.array_equal(mine.logprob_sum, theirs.logprob_sum)
        assert np.array_equal(mine.n_tokens, theirs.n_tokens)


@pytest.mark.parametrize("binary_type", ["probing", "trie"])
def test_imported_arpa_scores_as_kenlm_on_the_arpa(arpa_pair, pool_texts, tmp_path, binary_type):
    arpa, sp_model = arpa_pair
    recipe = import_kenlm(arpa, sp_model, tmp_path / "m", binary_type=binary_type, log=_quiet)
    assert recipe.binary_type == binary_type and recipe.order == 3
    assert recipe.imported["kenlm_format"] == "arpa"
    built = read_kenlm_file(tmp_path / "m" / "model.bin")
    assert built.kind == "binary" and built.binary_type == binary_type
    assert set(built.vocabulary) == set(read_kenlm_file(arpa).vocabulary)
    assert built.counts == read_kenlm_file(arpa).counts

    # Direct: kenlm reading the ARPA itself, on the word pieces of each normalised line.
    model = kenlm.Model(str(arpa))
    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    got = _scores(tmp_path / "m", pool_texts[:100])
    for i, text in enumerate(pool_texts[:100]):
        log10, tokens = 0.0, 0
        for line in normalize_lines(text, CCNET_RECIPE):
            pieces = [p for w in line.split(" ") if w for p in sp.encode(w, out_type=str)]
            log10 += model.score(" ".join(pieces), bos=True, eos=True)
            tokens += len(pieces) + 1
        assert got.n_tokens[i] == tokens
        assert got.logprob_sum[i] == pytest.approx(log10 * np.log(10), rel=1e-6)


def test_a_sentencepiece_model_of_another_vocabulary_is_refused(
    kenlm_model_dir, arpa_pair, tmp_path
):
    _, other_sp = arpa_pair  # 800 pieces where the KenLM model was estimated on 2000
    with pytest.raises(ModelError, match="do not fit") as info:
        import_kenlm(kenlm_model_dir / "model.bin", other_sp, tmp_path / "m", log=_quiet)
    assert "KenLM model was trained on another tokenisation" in str(info.value)
    assert not (tmp_path / "m").exists()
    # The other way round: most of the 2000 pieces are unknown to the 800-piece model.
    arpa, _ = arpa_pair
    with pytest.raises(ModelError, match="SentencePiece pieces are in the KenLM vocabulary"):
        import_kenlm(arpa, kenlm_model_dir / "tokenizer.model", tmp_path / "m", log=_quiet)
    assert not list(tmp_path.iterdir())  # no temporary folder left behind


def test_a_recipe_other_than_the_training_one_is_refused(reference_texts, tmp_path):
    arpa, sp_model = _train_pair(tmp_path / "raw", reference_texts, RAW, 800)
    with pytest.raises(ModelError, match=r"the recipe ccnet changes \d+\.\d% of the pieces"):
        import_kenlm(arpa, sp_model, tmp_path / "m", log=_quiet)
    recipe = import_kenlm(arpa, sp_model, tmp_path / "m", recipe=RAW, log=_quiet)
    assert recipe.normalization == RAW and recipe.imported["recipe"] is None
    assert recipe.imported["fit"]["pieces_changed_by_recipe"] == 0.0


def test_the_smoke_score_uses_the_sample(kenlm_model_dir, tmp_path):
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("Съешь же ещё этих мягких французских булок\nда выпей чаю\n")
    with pytest.raises(ModelError, match=r"of the smoke text \(sample\) is in pieces unknown"):
        import_kenlm(
            kenlm_model_dir / "model.bin",
            kenlm_model_dir / "tokenizer.model",
            tmp_path / "m",
            sample=foreign,
            log=_quiet,
        )
    english = tmp_path / "english.txt"
    english.write_text("The government said on Monday that the plan would go ahead.\n")
    recipe = import_kenlm(
        kenlm_model_dir / "model.bin",
        kenlm_model_dir / "tokenizer.model",
        tmp_path / "m",
        sample=english,
        log=_quiet,
    )
    fit = recipe.imported["fit"]
    assert fit["smoke_source"] == "sample" and fit["smoke_lines"] == 1
    assert fit["smoke_unknown"] == 0.0 and -6 < fit["smoke_log10_per_piece"] < 0


def test_files_that_are_not_models_are_refused(kenlm_model_dir, tmp_path):
    sp_model = kenlm_model_dir / "tokenizer.model"
    with pytest.raises(ModelError, match="does not exist"):
        import_kenlm(tmp_path / "missing.bin", sp_model, tmp_path / "m")
    (tmp_path / "noise.bin").write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ModelError, match="neither a KenLM binary nor an ARPA file"):
        import_kenlm(tmp_path / "noise.bin", sp_model, tmp_path / "m")
    (tmp_path / "text.arpa").write_text("just some text\n" * 100)
    with pytest.raises(ModelError, match="neither a KenLM binary nor an ARPA file"):
        import_kenlm(tmp_path / "text.arpa", sp_model, tmp_path / "m")
    (tmp_path / "lm.arpa.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(200))
    with pytest.raises(ModelError, match="a gzip file; decompress it first"):
        import_kenlm(tmp_path / "lm.arpa.gz", sp_model, tmp_path / "m")
    header = (kenlm_model_dir / "model.bin").read_bytes()[:200]
    (tmp_path / "old.bin").write_bytes(header.replace(b"version 5", b"version 4"))
    with pytest.raises(ModelError, match="another format version"):
        import_kenlm(tmp_path / "old.bin", sp_model, tmp_path / "m")
    with pytest.raises(ModelError, match="not a SentencePiece model"):
        import_kenlm(kenlm_model_dir / "model.bin", tmp_path / "text.arpa", tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "lm.arpa.gz",
        "noise.bin",
        "old.bin",
        "text.arpa",
    ]


def test_an_existing_folder_is_replaced_only_when_asked(kenlm_model_dir, tmp_path):
    args = (kenlm_model_dir / "model.bin", kenlm_model_dir / "tokenizer.model", tmp_path / "m")
    import_kenlm(*args, log=_quiet)
    with pytest.raises(ModelError, match="exists; remove it or pass --overwrite"):
        import_kenlm(*args, log=_quiet)
    import_kenlm(*args, recipe="datafilter-v1", overwrite=True, log=_quiet)
    assert load_recipe(tmp_path / "m").normalization.name == "datafilter-v1"


def test_cli_import_kenlm(kenlm_model_dir, arpa_pair, tmp_path, capsys, run_cli):
    out = tmp_path / "m"
    argv = ["-q", "import-kenlm", "--kenlm", str(kenlm_model_dir / "model.bin")]
    argv += ["--sentencepiece", str(kenlm_model_dir / "tokenizer.model"), "--output", str(out)]
    assert run_cli(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["normalization"] == CCNET_RECIPE.model_dump()
    assert printed["imported"]["recipe"] == "ccnet"
    argv_v1 = [*argv, "--recipe", "datafilter-v1", "--norm", "lowercase=false", "--overwrite"]
    assert run_cli(argv_v1) == 0
    capsys.readouterr()
    assert load_recipe(out).normalization.differences(CCNET_RECIPE) == [
        "lowercase: False != True",
        "punctuation_table: 'datafilter-v1' != 'ccnet'",
        "non_printing: 'category_c' != 'c0_c1'",
    ]
    bad = ["-q", "import-kenlm", "--kenlm", str(kenlm_model_dir / "model.bin")]
    bad += ["--sentencepiece", str(arpa_pair[1]), "--output", str(tmp_path / "bad")]
    assert run_cli(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("datafilter: error: ") and "do not fit" in err[0]


def test_a_binary_without_vocabulary_strings(kenlm_model_dir, tmp_path):
    """KenLM binaries may leave out the vocabulary strings (header flag at byte 100): the
    overlap is then measured by asking the model about each piece."""
    data = bytearray((kenlm_model_dir / "model.bin").read_bytes())
    assert data[100] == 1
    data[100] = 0
    (tmp_path / "novocab.bin").write_bytes(bytes(data))
    assert read_kenlm_file(tmp_path / "novocab.bin").vocabulary is None
    assert read_kenlm_file(kenlm_model_dir / "model.bin").vocabulary[:3] == ["<unk>", "<s>", "</s>"]
    recipe = import_kenlm(
        tmp_path / "novocab.bin", kenlm_model_dir / "tokenizer.model", tmp_path / "m", log=_quiet
    )
    fit = recipe.imported["fit"]
    assert fit["kenlm_words"] is None and fit["kenlm_words_in_sentencepiece"] is None
    with_vocab = import_kenlm(
        kenlm_model_dir / "model.bin", kenlm_model_dir / "tokenizer.model", tmp_path / "n"
    ).imported["fit"]
    assert fit["shared"] == with_vocab["shared"] and fit["pieces_in_kenlm"] > 0.95


def test_cli_train_kenlm_takes_a_recipe(tmp_path, capsys, run_cli):
    text = tmp_path / "tiny.txt"
    text.write_text("The cat sat on the mat.\u3002\nA dog ran in the park!\n" * 20)
    argv = ["-q", "train-kenlm", "--input", str(text), "--output", str(tmp_path / "m")]
    assert run_cli([*argv, "--order", "3", "--recipe", "datafilter-v1"]) == 0
    assert json.loads(capsys.readouterr().out)["normalization"]["non_printing"] == "category_c"
    assert load_recipe(tmp_path / "m").normalization.name == "datafilter-v1"
    assert run_cli([*argv, "--recipe", "ccnet-v2"]) == 2
    assert "unknown normalisation recipe 'ccnet-v2'" in capsys.readouterr().err
