"""DataCat: one log file per store and cycle, written whole and then renamed into place.

Files live in `<logs_dir>/<store_id>/<store_id>-<cycle:010d>.log`. The content is written to a
dot-temp name in the same folder and renamed, so a reader listing `*.log` never sees half a file.
The first line is the header `timestamp;store_id;type;content;extra_1;extra_2`.
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER = "timestamp;store_id;type;content;extra_1;extra_2"


def file_path(logs_dir: Path, store_id: str, cycle: int) -> Path:
    return logs_dir / store_id / f"{store_id}-{cycle:010d}.log"


def write_file(logs_dir: Path, store_id: str, cycle: int, content: str,
               *, only_if_missing: bool = False) -> Path:
    final = file_path(logs_dir, store_id, cycle)
    if only_if_missing and final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f".{final.name}.tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.replace(temp, final)
    return final
