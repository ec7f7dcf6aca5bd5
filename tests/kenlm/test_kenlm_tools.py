"""Tests for finding, checking and using KenLM's lmplz/build_binary."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from datafilter.errors import MissingDependencyError
from datafilter.kenlm import tools as kt

BUILD_HINT = "run `python -m datafilter.kenlm.tools` (after scripts/install_system_deps.sh)"

WORDS = "the cat dog sat on a mat ran fast slow big small red blue house tree"

ALL_PACKAGES = [
    "cmake",
    "g++",
    "libboost-program-options-dev",
    "libboost-system-dev",
    "libboost-thread-dev",
    "libboost-test-dev",
    "zlib1g-dev",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Drop the tool overrides so lookups use the cache and PATH only."""
    monkeypatch.delenv(kt.ENV_LMPLZ, raising=False)
    monkeypatch.delenv(kt.ENV_BUILD_BINARY, raising=False)
    return monkeypatch


@pytest.fixture
def tools(clean_env: pytest.MonkeyPatch) -> kt.KenlmTools:
    found = kt.find_kenlm_tools()
    if found is None:
        pytest.skip(f"KenLM tools were never built; {BUILD_HINT}")
    return found


def _corpus(path: Path, lines: int = 300) -> Path:
    rng = random.Random(0)
    words = WORDS.split()
    text = "\n".join(
        " ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(lines)
    )
    path.write_text(text + "\n")
    return path


def test_tools_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kt.ENV_CACHE_DIR, str(tmp_path / "c"))
    expected = tmp_path / "c" / "kenlm-tools" / kt.KENLM_SDIST_VERSION / "bin"
    assert kt.tools_cache_dir() == expected
    monkeypatch.delenv(kt.ENV_CACHE_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kt.tools_cache_dir() == tmp_path / "xdg" / "datafilter" / expected.relative_to(
        tmp_path / "c"
    )


def test_find_prefers_cache(tools: kt.KenlmTools) -> None:
    cache = kt.tools_cache_dir()
    if not (cache / "lmplz").is_file():
        pytest.skip(f"tools found on PATH, not in the cache {cache}")
    assert tools == kt.KenlmTools(cache / "lmplz", cache / "build_binary")


def test_lmplz_and_build_binary_make_loadable_model(tools: kt.KenlmTools, tmp_path: Path) -> None:
    kenlm = pytest.importorskip("kenlm")
    corpus = _corpus(tmp_path / "corpus.txt")
    arpa, binary = tmp_path / "m.arpa", tmp_path / "m.bin"
    with corpus.open() as src, arpa.open("w") as out:
        subprocess.run(
            [str(tools.lmplz), "-o", "3", "-S", "64M", "-T", str(tmp_path), "--discount_fallback"],
            stdin=src,
            stdout=out,
            stderr=subprocess.PIPE,
            check=True,
        )
    text = arpa.read_text()
    assert "\\data\\" in text[:20]
    assert "\\3-grams:" in text
    subprocess.run(
        [str(tools.build_binary), "-S", "64M", "probing", str(arpa), str(binary)],
        capture_output=True,
        check=True,
    )
    model = kenlm.Model(str(binary))
    assert model.order == 3
    seen = model.score("the cat sat on a mat", bos=True, eos=True)
    unseen = model.score("zebra quantum xylophone", bos=True, eos=True)
    assert seen < 0
    assert seen > unseen


def test_env_override(tools: kt.KenlmTools, clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lmplz = Path(shutil.copy2(tools.lmplz, tmp_path / "my-lmplz"))
    build_binary = Path(shutil.copy2(tools.build_binary, tmp_path / "my-build-binary"))
    clean_env.setenv(kt.ENV_LMPLZ, str(lmplz))
    clean_env.setenv(kt.ENV_BUILD_BINARY, str(build_binary))
    assert kt.find_kenlm_tools() == kt.KenlmTools(lmplz, build_binary)
    out = subprocess.run([str(lmplz), "--help"], capture_output=True, text=True)
    assert "order" in out.stdout + out.stderr


def test_env_override_must_be_executable(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    not_exec = tmp_path / "lmplz"
    not_exec.write_text("")
    not_exec.chmod(0o644)
    clean_env.setenv(kt.ENV_LMPLZ, str(not_exec))
    with pytest.raises(MissingDependencyError, match="both"):
        kt.find_kenlm_tools()
    clean_env.setenv(kt.ENV_BUILD_BINARY, str(not_exec))
    with pytest.raises(MissingDependencyError, match="not an executable"):
        kt.find_kenlm_tools()


def test_not_found_and_no_build_names_setup_command(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv(kt.ENV_CACHE_DIR, str(tmp_path / "cache"))
    clean_env.setenv("PATH", str(tmp_path / "empty-bin"))
    assert kt.find_kenlm_tools() is None
    with pytest.raises(MissingDependencyError) as err:
        kt.ensure_kenlm_tools(build=False)
    assert "datafilter setup-kenlm" in str(err.value)
    assert kt.ENV_LMPLZ in str(err.value)


def test_missing_prerequisites_name_debian_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The real check, run against an empty filesystem and PATH: everything is missing.
    monkeypatch.setattr(kt, "_INCLUDE_DIRS", (str(tmp_path / "include"),))
    monkeypatch.setattr(kt, "_LIB_DIRS", (str(tmp_path / "lib"),))
    monkeypatch.setattr(kt.shutil, "which", lambda name: None)
    missing = kt.check_build_prerequisites()
    text = "\n".join(missing)
    for package in ALL_PACKAGES:
        assert f"apt-get install {package}" in text, package
    assert "boost program_options headers: apt-get install libboost-program-options-dev" in missing

    with pytest.raises(MissingDependencyError) as err:
        kt.build_kenlm_tools(tmp_path / "cache", log=lambda _msg: None)
    assert "scripts/install_system_deps.sh" in str(err.value)
    assert "libboost-thread-dev" in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_prerequisites_found_in_given_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    include, lib = tmp_path / "include", tmp_path / "lib"
    for _what, header, stem, _pkg in kt._HEADER_PREREQS:
        (include / header).parent.mkdir(parents=True, exist_ok=True)
        (include / header).write_text("")
        if stem:
            lib.mkdir(exist_ok=True)
            (lib / f"lib{stem}.so").write_text("")
    monkeypatch.setattr(kt, "_INCLUDE_DIRS", (str(include),))
    monkeypatch.setattr(kt, "_LIB_DIRS", (str(lib),))
    monkeypatch.setattr(kt.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert kt.check_build_prerequisites() == []

    # A header without its library (e.g. only libboost-dev installed) still counts as missing.
    (lib / "libboost_thread.so").unlink()
    assert kt.check_build_prerequisites() == [
        "boost thread headers: apt-get install libboost-thread-dev"
    ]


def test_build_with_bad_sdist_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(kt, "check_build_prerequisites", lambda: [])
    monkeypatch.setenv(kt.ENV_SDIST, str(tmp_path / "nope.tar.gz"))
    with pytest.raises(MissingDependencyError, match=kt.ENV_SDIST):
        kt.build_kenlm_tools(tmp_path / "cache", log=lambda _msg: None)


def test_main_no_build_prints_paths(
    tools: kt.KenlmTools, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kt.main(["--no-build"]) == 0
    out = capsys.readouterr().out
    assert f"lmplz: {tools.lmplz}" in out
    assert f"build_binary: {tools.build_binary}" in out
