"""A battery of mistakes: each is one line (naming the key or flag, the bad value, what is valid
and the likely intended one) before any work starts, and the run folder stays usable."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from helpers_corpus import LOCAL

from datafilter import api, cli


@pytest.fixture()
def corpus(tmp_path, demo_corpus) -> Path:
    """Two shards of real text with id, text, domain and source columns."""
    table = pq.read_table(demo_corpus.pool_dir, columns=["id", "text", "domain", "source"])
    folder = tmp_path / "in"
    folder.mkdir()
    pq.write_table(table.slice(0, 40), folder / "a.parquet")
    pq.write_table(table.slice(40, 40), folder / "b.parquet")
    return folder


@pytest.fixture()
def scored(tmp_path, corpus, kenlm_model_dir) -> Path:
    run = tmp_path / "run"
    api.score(corpus, run, options={"model": str(kenlm_model_dir)}, runtime=LOCAL)
    return run


def _fails(capfd, *args) -> str:
    """Run the command line in this process: exit 2 and exactly one line on stderr."""
    code = cli.main([str(a) for a in args])
    out, err = capfd.readouterr()
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _score(corpus: Path, run: Path, model: Path, *extra) -> tuple[str, ...]:
    return ("score", "--input", corpus, "--output", run, "--model", model,
            "--executor", "local", *extra)  # fmt: skip


def test_a_wrong_column_is_one_line_before_any_scoring_and_the_run_stays_usable(
    capfd, tmp_path, corpus, kenlm_model_dir
) -> None:
    run = tmp_path / "run"
    line = _fails(capfd, *_score(corpus, run, kenlm_model_dir, "--text-column", "txt"))
    assert line == (
        f"datafilter: error: {corpus / 'a.parquet'}: text_column 'txt': no such column in the "
        "first input shard; its columns are id, text, domain, source; did you mean 'text'?"
    )
    assert not (run / "scores").exists()
    line = _fails(capfd, *_score(corpus, run, kenlm_model_dir, "--id-column", "ID"))
    assert "id_column 'ID': no such column" in line and "did you mean 'id'?" in line
    # The folder is not poisoned: the right columns are scored there.
    args = _score(corpus, run, kenlm_model_dir, "--id-column", "id")
    assert cli.main([str(a) for a in args]) == 0
    assert len(list((run / "scores" / "kenlm").glob("*.parquet"))) == 2


def test_a_column_change_after_scoring_is_refused_unless_overwrite(
    capfd, tmp_path, corpus, kenlm_model_dir, scored
) -> None:
    line = _fails(capfd, *_score(corpus, scored, kenlm_model_dir, "--id-column", "id"))
    assert "was scored with text column 'text' and id column None" in line
    assert "--overwrite" in line
    args = _score(corpus, scored, kenlm_model_dir, "--id-column", "id", "--overwrite")
    assert cli.main([str(a) for a in args]) == 0
    capfd.readouterr()


def test_group_and_report_columns_are_checked_before_any_scan(capfd, tmp_path, scored) -> None:
    line = _fails(capfd, "thresholds", "--run", scored, "--group-by", "domian")
    assert "group_by 'domian': no such column" in line
    assert "its columns are id, text, domain, source; did you mean 'domain'?" in line
    assert not (scored / "thresholds").exists()
    assert cli.main(["thresholds", "--run", str(scored), "--selector", "perplexity_band",
                     "--no-table"]) == 0  # fmt: skip
    capfd.readouterr()
    out = tmp_path / "out"
    line = _fails(capfd, "select", "--run", scored, "--output", out, "--report-by", "sorce",
                  "--executor", "local")  # fmt: skip
    assert "report_by 'sorce': no such column" in line and "did you mean 'source'?" in line
    line = _fails(capfd, "select", "--run", scored, "--output", out, "--group-by", "domian",
                  "--executor", "local")  # fmt: skip
    assert "group_by 'domian': no such column" in line and "did you mean 'domain'?" in line
    assert not out.exists() or not list(out.glob("*.parquet"))


def test_option_typos_name_the_key_the_choices_and_the_likely_one(
    capfd, tmp_path, corpus, kenlm_model_dir, scored
) -> None:
    run = tmp_path / "fresh"
    with pytest.raises(SystemExit) as exit_:  # argparse: the command's usage, then the line
        cli.main([str(a) for a in _score(corpus, run, kenlm_model_dir, "--text-col", "text")])
    assert exit_.value.code == 2
    err = capfd.readouterr().err
    assert err.startswith("usage: datafilter score ")
    assert err.strip().splitlines()[-1] == (
        "datafilter score: error: unrecognized arguments: --text-col text; "
        "did you mean '--text-column'?"
    )

    for args, expected in [
        (("--executor", "locl"), "invalid choice: 'locl' (choose from 'auto', 'local', "
                                 "'process', 'ray'); did you mean 'local'?"),
        (("--segmentation", "line"), "unrecognized arguments: --segmentation line; "
                                     "segmentation is an option of the scorer: --set "
                                     "segmentation=VALUE"),
    ]:  # fmt: skip
        with pytest.raises(SystemExit):
            cli.main([str(a) for a in _score(corpus, run, kenlm_model_dir, *args)])
        err = capfd.readouterr().err
        assert err.startswith("usage: datafilter score ") and err.strip().endswith(expected)

    line = _fails(capfd, *_score(corpus, run, kenlm_model_dir, "--scorer", "kenlmm"))
    assert "unknown scorer 'kenlmm'; known scorers: " in line
    assert "did you mean 'kenlm'?" in line
    line = _fails(capfd, *_score(corpus, run, kenlm_model_dir, "--set", "mdoe=per_line"))
    assert "unknown option 'mdoe'; valid options: " in line and "did you mean 'mode'?" in line
    line = _fails(capfd, *_score(corpus, run, kenlm_model_dir, "--batch-rows", "many"))
    assert "batch_rows='many'" in line
    line = _fails(capfd, "thresholds", "--run", scored, "--selector", "perplexity_bnad")
    assert "did you mean 'perplexity_band'?" in line
    line = _fails(capfd, "thresholds", "--run", scored, "--selector", "perplexity_band",
                  "--set", "kep=0.5")  # fmt: skip
    assert "unknown option 'kep'" in line and "did you mean 'keep'?" in line
    line = _fails(capfd, "select", "--run", scored, "--output", tmp_path / "o",
                  "--set", "kep=0.5", "--executor", "local")  # fmt: skip
    assert "unknown option 'kep'" in line and "did you mean 'keep'?" in line
    assert not run.exists()


def test_wrong_paths_and_a_bad_model_are_one_line(capfd, tmp_path, corpus, kenlm_model_dir):
    run = tmp_path / "run"
    line = _fails(capfd, *_score(tmp_path / "nowhere", run, kenlm_model_dir))
    assert "nowhere" in line
    line = _fails(capfd, *_score(corpus, run, tmp_path / "no-model"))
    assert "no-model" in line
    broken = tmp_path / "broken-model"
    broken.mkdir()
    line = _fails(capfd, *_score(corpus, run, broken))
    assert "broken-model" in line
    assert not (run / "scores").exists()
    line = _fails(capfd, "thresholds", "--run", tmp_path / "not-a-run")
    assert "not-a-run" in line


def test_a_run_config_is_checked_whole_before_scoring(capfd, tmp_path, corpus, kenlm_model_dir):
    config = {
        "input": str(corpus),
        "run_dir": str(tmp_path / "run"),
        "score": {"options": {"model": str(kenlm_model_dir)}},
        "select": {"output": str(tmp_path / "out"), "options": {"kep": 0.5}},
        "ray": {"executor": "local"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    line = _fails(capfd, "run", path)
    assert line.startswith(f"datafilter: error: {path}: select: ")
    assert "unknown option 'kep'" in line and "did you mean 'keep'?" in line
    assert not (tmp_path / "run").exists()  # found at load time: nothing scored

    config["select"]["options"] = {"keep": 0.5}
    config["selct"] = config.pop("select")
    path.write_text(yaml.safe_dump(config))
    line = _fails(capfd, "run", path)
    assert "unknown option 'selct'" in line and "did you mean 'select'?" in line

    config["select"] = config.pop("selct")
    config["select"]["group_by"] = "domian"
    path.write_text(yaml.safe_dump(config))
    line = _fails(capfd, "run", path)
    assert "select.group_by 'domian': no such column" in line
    assert "did you mean 'domain'?" in line
    assert not (tmp_path / "run").exists()


def test_a_typo_over_2000_shards_is_one_line(capfd, tmp_path, kenlm_model_dir) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    table = pa.table({"id": ["a"], "text": ["one document"]})
    for i in range(2000):
        pq.write_table(table, folder / f"part-{i:05d}.parquet")
    run = tmp_path / "run"
    line = _fails(capfd, *_score(folder, run, kenlm_model_dir, "--text-column", "body"))
    assert "part-00000.parquet: text_column 'body': no such column" in line
    assert not (run / "scores").exists()



def test_a_start_that_scored_nothing_does_not_bind_the_folder(
    capfd, tmp_path, corpus, kenlm_model_dir
) -> None:
    """A run record written by a start whose workers then failed (no shard scored): the next
    start with other settings under the same scorer id goes ahead."""
    import json
    import shutil

    from datafilter.io.storage import location

    run = tmp_path / "run"
    run.mkdir()
    failed = {"scorer": {"scorer": "kenlm", "options": {"model": "/elsewhere"}},
              "settings": {"text_column": "text"}}  # fmt: skip
    for text_column in ("body", "text"):  # other columns; the same columns, other scorer
        (run / "run.json").write_text(json.dumps({
            "input": str(location(corpus)), "text_column": text_column,
            "scorers": {"kenlm": failed},
        }))  # fmt: skip
        assert cli.main([str(a) for a in _score(corpus, run, kenlm_model_dir)]) == 0
        capfd.readouterr()
        record = json.loads((run / "run.json").read_text())
        assert record["text_column"] == "text"
        assert record["scorers"]["kenlm"]["scorer"]["options"]["model"] == str(kenlm_model_dir)
        shutil.rmtree(run / "_state")  # as if this start, too, had scored nothing
