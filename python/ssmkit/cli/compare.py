"""``ssmkit compare``: compare models by their data kernels (see :mod:`ssmkit.eval.datakernel`).

Models come as saved embeddings (``--embeddings a.npy b.npy ...``, each (items, features)
over the same items) or as trained ssmkit classifiers (``--checkpoints c1.pt c2.pt ...
--data DIR``), whose penultimate features of the dataset's items are the embeddings.
Writes to ``--out``: ``per_datum.csv`` (the first model against each other one),
``distances.csv``, ``manifold.csv`` and ``manifold.png``; with checkpoints also
``embeddings/<name>.npy`` and ``items.csv``.

scipy and torch load when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .command import Command
from .types import existing, positive


def arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--embeddings", nargs="+", type=existing("file"), metavar="NPY", help="embeddings (items, features) of the same items, one .npy per model")
    source.add_argument("--checkpoints", nargs="+", type=existing("file"), metavar="CKPT", help="trained ssmkit classifiers; embeds --data with each")
    parser.add_argument("--data", type=existing("folder"), metavar="DIR", help="with --checkpoints: the WAV folder to embed (e.g. FSDD)")
    parser.add_argument("--split", choices=["train", "test", "all"], default="test", help="with --checkpoints: which FSDD items (default: test)")
    parser.add_argument("--names", nargs="+", metavar="NAME", help="model names (default: from the file names)")
    parser.add_argument("--k", type=positive(), required=True, metavar="K", help="neighbours per item in the kNN graphs")
    parser.add_argument("--d", type=positive(), metavar="D", help="embedding dimension (default: Zhu-Ghodsi elbow)")
    parser.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine", help="kNN metric (default: cosine)")
    parser.add_argument("--bootstrap", type=positive(), default=200, metavar="B", help="bootstrap graph pairs per test (default: 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT", help="folder for the results (created)")


def _model_names(paths: list[Path], names: list[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(paths) or len(set(names)) != len(names):
            raise ValueError(f"--names: expected {len(paths)} distinct names, one per model, got {names}")
        return names
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    # Same file names (run1/last.pt, run2/last.pt): name them by their folders.
    folders = [f"{p.parent.name}/{p.stem}" for p in paths]
    return folders if len(set(folders)) == len(folders) else [str(p) for p in paths]


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..eval import datakernel

    try:
        if len(args.embeddings or args.checkpoints) < 2:
            raise ValueError("expected at least two models to compare")
        if args.checkpoints and args.data is None:
            raise ValueError("--checkpoints needs --data, the folder of items to embed")
        names = _model_names(args.embeddings or args.checkpoints, args.names)
        args.out.mkdir(parents=True, exist_ok=True)
        items = None
        if args.embeddings:
            embeddings = {name: np.load(path, allow_pickle=False) for name, path in zip(names, args.embeddings)}
        else:
            split = None if args.split == "all" else args.split
            embeddings, items = datakernel.embed_checkpoints(dict(zip(names, args.checkpoints)), args.data, split=split)
            (args.out / "embeddings").mkdir(exist_ok=True)
            for name, Y in embeddings.items():
                np.save(args.out / "embeddings" / f"{name.replace('/', '_')}.npy", Y)
            items.to_csv(args.out / "items.csv", index=False)
        summary = datakernel.compare_models(
            embeddings, args.k, args.out, d=args.d, n_bootstrap=args.bootstrap, seed=args.seed, metric=args.metric, items=items
        )
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"ssmkit compare: {e}", file=sys.stderr)
        return 2
    print(summary)
    return 0


COMMAND = Command(
    help="compare models by the kNN graphs of their embeddings (data kernels)",
    description="Per-datum tests (the first model against each other one), distances between models and "
    "a manifold of models from the omnibus embedding of their kNN graphs (Duderstadt, Helm and Priebe, 2023).",
    arguments=arguments,
    run=run,
)
