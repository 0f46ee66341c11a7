"""The probe stage says what it is doing: a log line as each probe starts and ends, with its
wall time, which is also in each result's params (issue 20)."""

from __future__ import annotations

import logging
import re

import pytest

from embedforensics.runner import _run_probes
from tests.probes.test_runner_probes import _embeddings, _recipe


def test_each_probe_logs_its_start_and_end_with_wall_time(
        caplog: pytest.LogCaptureFixture) -> None:
    loaded = _recipe([{"name": "pca", "n_components": 2},
                      {"name": "lda", "n_folds": 3, "n_permutations": 9}])
    with caplog.at_level(logging.INFO, logger="embedforensics.study.pipeline"):
        outputs, failures = _run_probes(loaded, _embeddings(per_layer=False))
    assert not failures
    lines = [r.getMessage() for r in caplog.records
             if r.name == "embedforensics.study.pipeline"]
    assert lines[0] == "probe 1/2 pca: started (60 rows)"
    assert re.fullmatch(r"probe 1/2 pca: done in \d+\.\d s", lines[1])
    assert lines[2] == "probe 2/2 lda: started (60 rows)"
    assert re.fullmatch(r"probe 2/2 lda: done in \d+\.\d s", lines[3])
    assert all(o["params"]["seconds"] >= 0 for o in outputs)
