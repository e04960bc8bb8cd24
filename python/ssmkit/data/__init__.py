"""Data: folders of WAV files (``ssmkit.data.audio``) and generated long-range tasks.

``fsdd_root()`` finds the Free Spoken Digit Dataset: the ``SSMKIT_FSDD`` environment
variable, else ``../shared/data/fsdd`` beside the current folder or beside the source
checkout this package was installed from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional, overload

FSDD_ENV = "SSMKIT_FSDD"


def _fsdd_candidates() -> list[Path]:
    places = []
    if os.environ.get(FSDD_ENV):
        places.append(Path(os.environ[FSDD_ENV]))
    places.append(Path.cwd().parent / "shared" / "data" / "fsdd")
    # An editable install runs from <repo>/python/ssmkit/data: the repo's sibling ../shared.
    places.append(Path(__file__).resolve().parents[4] / "shared" / "data" / "fsdd")
    return places


@overload
def fsdd_root(required: Literal[True] = True) -> Path: ...
@overload
def fsdd_root(required: bool) -> Optional[Path]: ...


def fsdd_root(required: bool = True) -> Optional[Path]:
    """The FSDD folder (holding ``recordings/`` and ``speakers.json``).

    Looks at ``$SSMKIT_FSDD``, then ``../shared/data/fsdd`` from the current folder, then
    beside the source checkout. Raises FileNotFoundError naming the places tried (or
    returns None with ``required=False``) when none exists.
    """
    places = _fsdd_candidates()
    if os.environ.get(FSDD_ENV) and not places[0].is_dir():
        if required:
            raise FileNotFoundError(f"{FSDD_ENV}={os.environ[FSDD_ENV]!r} is not a folder")
        return None
    for place in places:
        if (place / "recordings").is_dir() or any(place.glob("*.wav")):
            return place.resolve()
    if required:
        tried = ", ".join(str(p) for p in places)
        raise FileNotFoundError(f"FSDD not found (tried {tried}); set {FSDD_ENV} to its folder")
    return None


__all__ = ["FSDD_ENV", "fsdd_root"]
