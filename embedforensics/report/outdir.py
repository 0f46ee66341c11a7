"""One run's files in an output folder, never two runs' mixed.

Every report file is first written into a fresh staging folder inside the output folder;
only when all of them (``results.json`` last) are written are the previous run's report
files moved aside and the new ones moved in (renames on one file system), so a rerun into
the same folder leaves no stale plot of a probe the recipe no longer has, and a run that
fails half-way leaves the previous run's files as they were. Files in the folder that a
run does not write (a user's notes, a heads folder) are never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: what a run or comparison writes into its folder; replaced as a whole on every run
OUTPUT_NAMES = ("plots", "report.html", "report.md", "results.schema.json", "results.json")


@contextmanager
def staged_output(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty staging folder; on leaving without an error, replace ``out_dir``'s
    :data:`OUTPUT_NAMES` by what the staging folder holds (``results.json`` last). On an
    error the staging folder is removed and ``out_dir`` keeps the previous run's files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    previous = Path(tempfile.mkdtemp(prefix=".previous-", dir=out))
    try:
        for name in OUTPUT_NAMES:
            old = out / name
            if old.exists() or old.is_symlink():
                os.replace(old, previous / name)
        written = sorted(stage.iterdir(), key=lambda p: p.name == "results.json")
        for entry in written:
            os.replace(entry, out / entry.name)
    finally:
        shutil.rmtree(previous, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)
