"""Where a command's records go: ``--out`` when given, else a run folder of its own, so that nothing a
user computed is lost; and "the last run", which `pebench report` reads when given no path.

Run folders live under ``results/runs/`` of the working directory (``PEBENCH_RUNS`` moves them). A
command without ``--out`` writes to ``COMMAND-DIGEST/``, the digest taken over the cells it runs, so
the same command run again resumes in the same folder. Every run started records its folder in the
root's ``last`` file. Output paths are checked for writability before any work (nothing here imports
torch).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pebench.atomic import atomic_path
from pebench.cli.options import console
from pebench.errors import PebenchError
from pebench.results import RESULTS_NAME
from pebench.training.recipe import resume_state_path

#: the results file of the run this process is doing and how many lines it held before: what Ctrl-C reports
_active: list[tuple[Path, int]] = []
#: the checkpoints `pebench train` / `finetune` are writing, and whether each existed before: what Ctrl-C kept
_training: list[tuple[Path, bool]] = []

RUNS_ENV = "PEBENCH_RUNS"


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV) or Path("results") / "runs")


def default_run_folder(command: str, keys: set[str]) -> Path:
    """The folder of this command's cells: the same cells, the same folder (so a rerun resumes)."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:10]
    return runs_root() / f"{command}-{digest}"


def results_file(out: Path) -> Path:
    """``--out`` as the JSON-lines file records are appended to: a ``.jsonl`` path or an existing file is
    that file; any other path is a folder that holds ``results.jsonl``."""
    if out.suffix == ".jsonl" or out.is_file():
        return out
    return out / RESULTS_NAME


def check_writable(path: Path, option: str = "--out") -> None:
    """Fails (one line, exit 2) unless the file ``path`` can be written: its folder, or the nearest one that
    exists, takes a new file. Creates nothing."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder} is a file, not a folder")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".pebench-write-check-"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as error:
        reason = error.strerror or str(error)
        raise PebenchError(f"{option} {path}: cannot write there ({reason}); choose a writable path with "
                           f"{option}") from None


def remember_last(folder: Path) -> None:
    """Makes ``folder`` "the last run" (best effort: a read-only runs root only loses the shortcut)."""
    root = runs_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with atomic_path(root / "last") as tmp:
            tmp.write_text(str(folder.resolve()) + "\n", encoding="utf-8")
    except OSError:
        pass


def last_run() -> Path:
    """The folder of the last run started, for `pebench report` with no path."""
    marker = runs_root() / "last"
    folder = Path(marker.read_text(encoding="utf-8").strip()) if marker.exists() else None
    if folder is None or not folder.exists():
        raise PebenchError(f"no last run recorded under {runs_root()}; pass a results folder or .jsonl file, "
                           "e.g. `pebench report results/zoo`")
    return folder


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except OSError:
        return 0


def start_run(out: Path | None, command: str, keys: set[str]) -> Path:
    """The results file of a command's run (``--out`` or its default run folder), checked writable,
    remembered as the last run and announced."""
    path = results_file(out) if out is not None else default_run_folder(command, keys) / RESULTS_NAME
    check_writable(path)
    remember_last(path.parent)
    _training.clear()
    _active[:] = [(path, _lines(path))]
    console.print(f"records: {path}", highlight=False, soft_wrap=True)
    return path


def finish_run(path: Path, count: int, report_does: str) -> None:
    console.print(f"{count} records in {path}; `pebench report` {report_does} (this is the last run)",
                  highlight=False, soft_wrap=True)


def start_training(checkpoints: list[Path]) -> None:
    """Training into ``checkpoints``: an interrupt reports the epochs their resume states kept."""
    _active.clear()
    _training[:] = [(path, path.exists()) for path in checkpoints]


def _training_message() -> str:
    written = [path.name for path, existed in _training if path.exists() and not existed]
    states = [resume_state_path(path).name for path, _ in _training if resume_state_path(path).exists()]
    if not written and not states:
        return "interrupted before a training epoch finished; there is nothing to resume"
    kept = ([f"{len(written)} finished models"] if written else []) + (
        [f"the finished epochs in {', '.join(states)}"] if states else [])
    return f"interrupted; kept {' and '.join(kept)}: rerun the same command to resume"


def interrupted_message() -> str:
    """What an interrupted run kept, and how to resume, only when something was kept."""
    if _training:
        return _training_message()
    if not _active:
        return "interrupted"
    from pebench.runner.partial import partial_files

    path, before = _active[0]
    total, unfinished = _lines(path), partial_files(path.parent)
    new = total - before
    kept = [f"{new} new records" if new else "", f"{len(unfinished)} unfinished passes" if unfinished else ""]
    if not any(kept):
        if total:
            return f"interrupted; nothing new was saved, the {total} earlier records in {path} are kept: rerun " \
                   "the same command to resume"
        return "interrupted before anything was saved; there is nothing to resume"
    return f"interrupted; kept {' and '.join(k for k in kept if k)} in {path.parent}: rerun the same command " \
           "to resume"
