"""Files the job writes for other programs (JUnit reports, metrics), and the checks that make a
bad path fail before anything is created rather than after the work is done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from job.errors import BadInput


def check_writable(path: str, option: str) -> str:
    folder = Path(path).parent
    if not folder.is_dir():
        raise BadInput(f"cannot write {option} {path}: folder {folder} does not exist; create it")
    if Path(path).is_dir():
        raise BadInput(f"cannot write {option} {path}: it is a folder; give a file path")
    if not os.access(folder, os.W_OK):
        raise BadInput(f"cannot write {option} {path}: folder {folder} is not writable")
    return path


def write_atomically(path: str, text: str) -> None:
    """Readers (a CI uploader, node_exporter's textfile collector) see the old file or the new
    one, never half of it: write beside it, then rename over it."""
    target = Path(path)
    descriptor, scratch = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(scratch, 0o644)
        os.replace(scratch, target)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
