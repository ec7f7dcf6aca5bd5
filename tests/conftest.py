"""Shared, session-scoped fixtures: a small demo corpus and a KenLM model trained on it.

Both are built once per test session (about 15 s) under pytest's temporary folder. Tests must
treat them as read-only: copy a folder before changing anything in it.

No silent skips: a test that skips for any reason but a missing GPU (the reason names "GPU")
fails instead, with its reason: everything else it needs is installed by
``bash scripts/setup.sh``. ``DATAFILTER_TEST_ALLOW_SKIPS=1`` lets such skips stand (a
deliberately partial set-up, e.g. ``DATAFILTER_SETUP_NEURAL=0``).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest

from datafilter.demo_corpus import DemoCorpus
from datafilter.errors import MissingDependencyError

ALLOW_SKIPS = "DATAFILTER_TEST_ALLOW_SKIPS"


def _refuse_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    """Turn a skip whose reason does not name a GPU into a failure that says why."""
    if not report.skipped or hasattr(report, "wasxfail") or os.environ.get(ALLOW_SKIPS) == "1":
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if "GPU" in reason:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped: {reason}\nOnly tests that need a GPU may skip: install what this test needs "
        f"(bash scripts/setup.sh installs everything), or set {ALLOW_SKIPS}=1 to allow it."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    _refuse_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    _refuse_skip(outcome.get_result())


def _quiet(_message: str) -> None:
    pass


@pytest.fixture(autouse=True)
def _datafilter_logger_as_it_was():
    """A test that runs ``cli.main`` in this process configures the ``datafilter`` logger (a
    handler printing on stderr, a level): undo it, so later tests see the library's default."""
    logger = logging.getLogger("datafilter")
    handlers, level = list(logger.handlers), logger.level
    yield
    for handler in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> DemoCorpus:
    """The demo corpus: ``reference/`` and ``pool/`` (4 shards: id, text, source, domain,
    quality)."""
    from datafilter.demo_corpus import build_demo_corpus

    try:
        return build_demo_corpus(tmp_path_factory.mktemp("shared") / "corpus")
    except MissingDependencyError as exc:
        pytest.skip(f"demo corpus unavailable: {exc}")


@pytest.fixture(scope="session")
def kenlm_model_dir(tmp_path_factory: pytest.TempPathFactory, demo_corpus: DemoCorpus) -> Path:
    """A small KenLM model folder (order 3, 2000 pieces) trained on the demo reference set."""
    from datafilter.kenlm.train import KenlmTrainingOptions, train_kenlm

    model = tmp_path_factory.mktemp("shared-model") / "model"
    options = KenlmTrainingOptions(order=3, vocab_size=2000, memory="256M")
    try:
        train_kenlm(
            [demo_corpus.reference_dir], model, text_columns=["text"], options=options, log=_quiet
        )
    except MissingDependencyError as exc:
        pytest.skip(f"KenLM model unavailable: {exc}")
    return model


@pytest.fixture
def s3_bucket(tmp_path):
    """A moto S3 server on loopback and a bucket on it; storage options point at it."""
    pytest.importorskip("moto")
    boto3 = pytest.importorskip("boto3")
    from moto_s3 import CREDENTIALS, running_moto_server

    from datafilter.io import storage

    with running_moto_server() as (_, endpoint):
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                     aws_secret_access_key="testing", region_name="us-east-1").create_bucket(
            Bucket="scores")
        storage.configure({"s3": {"endpoint_override": endpoint, **CREDENTIALS}})
        try:
            yield "s3://scores"
        finally:
            storage.configure(None)


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_reaches_commands():
    """A test run started in the background of a non-interactive shell (``cmd &`` in a script)
    inherits SIGINT ignored, and so would every command a test starts: the tests that press
    Ctrl-C on a command need it at its default, as in a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
