"""``python -m ssmkit``: the same command as ``ssmkit``."""

from .cli import main

raise SystemExit(main())
