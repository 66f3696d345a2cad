"""Finished paper-table rows kept in the repository, so that a table can be completed across machines.

A paper-table row takes 15-30 min on a 2-core CPU and its run directory (``runs/``) is not kept in
git, so a table that does not finish in one sitting would start from zero on the next machine. The
archive (``docs/paper-table-rows/`` by default) holds one small JSON per finished row: its result
(metrics, sizes, curves, command) plus what makes it the same experiment, and the commit and date it
was trained at. A later ``qdbev experiment paper-table`` with the same settings reuses the archived
result instead of training the row again (status ``archived``, shown in RESULTS.md).

"The same settings" is the row's settings (``paper_table.row_settings``) with the data directories
replaced by a fingerprint of their nuScenes tables (SynthScenes is deterministic given its recipe, so
a regenerated split has the same fingerprint wherever it lies). Code changes are not part of the key:
each entry names the commit it was trained at; delete the entry (or pass ``--archive ''``) to retrain.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import subprocess
from pathlib import Path


def data_fingerprint(dataroot: Path, version: str) -> str:
    """sha256 (hex) over the names and bytes of the ``*.json`` tables in ``<dataroot>/<version>``.

    Raises FileNotFoundError naming the folder when it holds no table."""
    folder = Path(dataroot) / version
    tables = sorted(folder.glob("*.json"))
    if not tables:
        raise FileNotFoundError(f"no nuScenes tables (*.json) in {folder}: generate the split first (make nano-data)")
    h = hashlib.sha256()
    for t in tables:
        h.update(t.name.encode() + b"\0")
        h.update(t.read_bytes())
    return h.hexdigest()


def archive_key(settings: dict, fingerprints: dict[str, str]) -> dict:
    """``settings`` with every path in ``fingerprints`` (e.g. ``dataroot``) replaced by its data fingerprint."""
    key = dict(settings)
    for k, fp in fingerprints.items():
        key[k] = f"tables-sha256:{fp}"
    return key


def entry_path(archive: Path, row: str, key: dict) -> Path:
    """``<archive>/<row>-<first 12 hex of sha256(key)>.json``: one file per row and experiment."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return Path(archive) / f"{row}-{digest}.json"


def load_entry(archive: Path, row: str, key: dict) -> dict | None:
    """The archived row result for exactly ``key``, or None.

    Raises ValueError naming the file when it is not a readable archive entry (truncated,
    hand-edited), so a broken entry is never mistaken for "not archived" or half-read."""
    p = entry_path(archive, row, key)
    if not p.is_file():
        return None
    try:
        entry = json.loads(p.read_text())
        result = entry["result"]
        if not isinstance(result, dict):
            raise TypeError("'result' is not an object")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ValueError(f"paper-table archive entry {p} is unreadable ({type(e).__name__}: {e}); "
                         f"restore it from git (git checkout -- {p}) or delete it to retrain the row") from e
    if entry.get("key") != key:  # a digest collision or a hand-edited file: not the same experiment
        return None
    return {**result, "archived": {"file": str(p), "commit": entry.get("commit"),
                                                "date": entry.get("date")}}


_PER_INVOCATION = ("archived", "status", "this_invocation_s")
"""Fields of a paper-table row that describe one invocation (trained / reused, its wall time)."""


def store_entry(archive: Path, row: str, key: dict, result: dict, trained_at: dict | None = None) -> Path:
    """Write ``result`` (a row of paper-table.json) under ``key``; returns the file.

    ``trained_at``: ``{"commit", "date"}`` of the training run (default: this checkout, today)."""
    p = entry_path(archive, row, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    # what describes the run, not this invocation (a rerun that reuses the run leaves the file as it was)
    clean = {k: v for k, v in result.items() if k not in _PER_INVOCATION}
    at = trained_at or provenance()
    entry = {"row": row, "key": key, "commit": at.get("commit"), "date": at.get("date"), "result": clean}
    p.write_text(json.dumps(entry, indent=1) + "\n")
    return p


def provenance() -> dict:
    """``{"commit": git_commit(), "date": today}``: recorded when a row starts training."""
    return {"commit": git_commit(), "date": _dt.date.today().isoformat()}


def git_commit(cwd: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` (+ ``-dirty`` when tracked files differ), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
