"""TestBench: evaluate a classifier on every slice, in batches; Report: the results as a
table grouped by category, a chart, JSON and HTML."""

from __future__ import annotations

import base64
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .metrics import METRICS
from .slices import CATEGORIES, Slice, SliceContext, read_item

__all__ = ["TestBench", "Report", "collate"]


def collate(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(x, labels, lengths) of a list of (x, label): equal shapes are stacked (lengths None),
    different lengths are zero-padded at the end to the longest, with their lengths."""
    xs = [x for x, _ in items]
    labels = torch.tensor([label for _, label in items], dtype=torch.long)
    if all(x.shape == xs[0].shape for x in xs):
        return torch.stack(xs), labels, None
    if any(x.shape[1:] != xs[0].shape[1:] for x in xs):
        raise ValueError(f"examples differ in more than their length: shapes {sorted({tuple(x.shape) for x in xs})}")
    lengths = torch.tensor([x.shape[0] for x in xs])
    return torch.nn.utils.rnn.pad_sequence(xs, batch_first=True), labels, lengths


def _resolve_metrics(metrics) -> dict[str, Callable]:
    out = {}
    for m in metrics:
        if isinstance(m, str):
            if m not in METRICS:
                raise ValueError(f"metrics: unknown metric {m!r}; choose from {', '.join(METRICS)} or pass a callable")
            out[m] = METRICS[m]
        elif callable(m):
            out[getattr(m, "__name__", repr(m))] = m
        else:
            raise TypeError(f"metrics: expected metric names or callables fn(logits, labels) -> float, got {m!r}")
    return out


class TestBench:
    """Evaluate ``model`` on ``dataset`` and on each slice.

    model: any callable mapping a batch x of shape (batch, length[, channels]) to logits
    (batch, classes), e.g. a torch.nn.Module (run in eval mode, restored afterwards).
    dataset: ``len()`` and ``dataset[i] -> (x, label, ...)`` (see :mod:`.slices`).
    slices: Slice objects or builders (Subpopulation, ScoreSubpopulation, metadata_field,
    Transformation, EvalSet, Attack), resolved against the dataset when the bench runs.
    metrics: names from ``METRICS`` or callables fn(logits, labels) -> float; the size of
    each slice is always reported, and attack slices add their attack success rate.
    pass_mask: for padded batches (examples of different lengths, or a transformation
    that shortens them), call ``model(x, mask=mask)`` with mask (batch, length) True on
    valid samples, as :class:`ssmkit.models.SequenceClassifier` takes it; otherwise the
    model sees the zero padding.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        model,
        dataset,
        slices: Sequence = (),
        metrics: Sequence = ("accuracy", "macro_f1", "cross_entropy", "ece"),
        *,
        metadata=None,
        name: str = "dataset",
        batch_size: int = 64,
        device: str | torch.device | None = None,
        pass_mask: bool = False,
        progress: bool = True,
    ):
        if not callable(model):
            raise TypeError(f"model: expected a callable classifier, got {type(model).__name__}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"dataset: expected an indexable dataset with len(), got {type(dataset).__name__}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive whole number, got {batch_size!r}")
        for i, s in enumerate(slices):
            if not hasattr(s, "slices"):
                raise TypeError(f"slices[{i}]: expected a Slice or a slice builder, got {type(s).__name__}")
        self.model, self.dataset, self.builders = model, dataset, list(slices)
        self.metrics = _resolve_metrics(metrics)
        self.context = SliceContext(dataset, metadata, name)
        self.batch_size, self.progress, self.pass_mask = batch_size, progress, pass_mask
        if device is None:
            params = model.parameters() if isinstance(model, torch.nn.Module) else iter(())
            device = next(params, torch.empty(0)).device
        self.device = torch.device(device)

    def resolve(self) -> list[Slice]:
        """The whole dataset ("all") followed by every builder's slices."""
        out = [Slice("all", "dataset", lineage=(self.context.name,))]
        for builder in self.builders:
            out.extend(builder.slices(self.context))
        return out

    def run(self) -> Report:
        from tqdm.auto import tqdm

        started = time.perf_counter()
        slices = self.resolve()
        training = self.model.training if isinstance(self.model, torch.nn.Module) else None
        if training:
            self.model.eval()
        self._clean: Any = None  # (logits, labels): clean logits of the whole dataset, reused by index
        try:
            total = sum(self._size(s) for s in slices)
            with tqdm(total=total, unit="ex", desc="robustness", disable=not self.progress) as bar:
                rows = [self._evaluate(s, bar) for s in slices]
        finally:
            if training:
                self.model.train()
        info = {
            "dataset": self.context.name,
            "examples": len(self.dataset),
            "model": type(self.model).__name__,
            "metrics": list(self.metrics),
            "batch_size": self.batch_size,
            "device": str(self.device),
            "seconds": round(time.perf_counter() - started, 3),
        }
        return Report(rows, info)

    def _size(self, s: Slice) -> int:
        return len(s.indices) if s.indices is not None else len(s.dataset if s.dataset is not None else self.dataset)

    def _forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> Callable:
        """The model as a function of the batch alone (what attacks differentiate)."""
        if not self.pass_mask or lengths is None:
            return self.model
        mask = torch.arange(x.shape[1], device=x.device) < lengths.to(x.device)[:, None]
        return lambda batch: self.model(batch, mask=mask)

    def _logits(self, forward: Callable, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = forward(x)
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != len(x):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model: expected logits of shape ({len(x)}, classes) for a batch of {len(x)}, got {got}")
        return out.detach().double().cpu()

    def _evaluate(self, s: Slice, bar) -> dict:
        dataset = s.dataset if s.dataset is not None else self.dataset
        indices = s.indices if s.indices is not None else list(range(len(dataset)))
        on_base = s.dataset is None
        clean_cached = on_base and s.transformation is None and self._clean is not None
        bar.set_postfix_str(s.name, refresh=False)
        logit_parts, label_parts, clean_correct = [], [], []
        if clean_cached and s.attack is None:
            logit_parts, label_parts = [self._clean[0][indices]], [self._clean[1][indices]]
            bar.update(len(indices))
        else:
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                x, y, lengths = collate([read_item(dataset, i) for i in batch])
                x = x.to(self.device)
                index = torch.tensor(batch)
                if s.transformation is not None:
                    x, lengths = s.transformation.apply(x, lengths, index)
                forward = self._forward(x, lengths)
                if s.attack is not None:
                    clean = self._clean[0][batch] if clean_cached else self._logits(forward, x)
                    clean_correct.append(clean.argmax(1) == y)
                    x = s.attack.perturb(forward, x, y.to(self.device), lengths, index)
                logit_parts.append(self._logits(forward, x))
                label_parts.append(y)
                bar.update(len(batch))
        logits = torch.cat(logit_parts) if logit_parts else torch.zeros(0, 0, dtype=torch.float64)
        labels = torch.cat(label_parts) if label_parts else torch.zeros(0, dtype=torch.long)
        if len(labels) and not 0 <= labels.min() <= labels.max() < logits.shape[1]:
            raise ValueError(
                f"model: gives logits for {logits.shape[1]} classes, but slice {s.name!r} has labels "
                f"from {labels.min().item()} to {labels.max().item()}"
            )
        if s.category == "dataset" and on_base:
            self._clean = (logits, labels)
        row = {"category": s.category, "slice": s.name, "size": len(labels)}
        row.update({name: fn(logits, labels) if len(labels) else math.nan for name, fn in self.metrics.items()})
        if s.attack is not None:
            # Of the examples the model got right, the fraction the attack made it get wrong.
            was_right = torch.cat(clean_correct) if clean_correct else torch.zeros(0, dtype=torch.bool)
            now_wrong = logits.argmax(1) != labels if len(labels) else torch.zeros(0, dtype=torch.bool)
            row["attack_success"] = (now_wrong & was_right).sum().item() / was_right.sum().item() if was_right.any() else math.nan
        row["lineage"] = " > ".join(s.lineage)
        return row


class Report:
    """Metrics per slice. ``table``: a pandas DataFrame indexed by (category, slice), the
    categories in the order of ``CATEGORIES``; ``info``: how the run was made."""

    def __init__(self, rows: list[dict], info: dict):
        import pandas as pd

        order = {c: i for i, c in enumerate(CATEGORIES)}
        rows = sorted(rows, key=lambda r: order[r["category"]])  # stable: keeps slice order within a category
        table = pd.DataFrame(rows)
        if "attack_success" not in table:
            table["attack_success"] = math.nan
        columns = ["size", *info["metrics"], "attack_success", "lineage"]
        self.table = table.set_index(["category", "slice"])[columns]
        self.info = dict(info)

    @property
    def metric_names(self) -> list[str]:
        return list(self.info["metrics"])

    def __repr__(self) -> str:
        return f"Report({len(self.table)} slices on {self.info['dataset']!r})"

    def _records(self) -> list[dict]:
        records = self.table.reset_index().to_dict("records")
        for r in records:
            for k, v in r.items():
                if isinstance(v, float) and math.isnan(v):
                    r[k] = None
        return records

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON ({"info": ..., "rows": [...]}, NaN as null); written to path if given."""
        text = json.dumps({"info": self.info, "rows": self._records()}, indent=2, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def figure(self, path: str | Path | None = None):
        """The Robustness-Gym-style chart: slices as rows grouped by category, one column of
        bars per metric (and size, and attack success when there are attacks). Saved as PNG
        to path if given; returns the matplotlib Figure."""
        import matplotlib
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

        table = self.table
        columns = [*self.metric_names, "size"]
        if table["attack_success"].notna().any():
            columns.append("attack_success")
        # Row positions top-down, with a header line for each category.
        ypos, headers, y = [], [], 0
        for category in dict.fromkeys(table.index.get_level_values(0)):
            headers.append((y, category))
            y += 1
            for _ in range(int((table.index.get_level_values(0) == category).sum())):
                ypos.append(y)
                y += 1
        colors = dict(zip(CATEGORIES, matplotlib.colormaps["tab10"].colors))  # type: ignore[attr-defined] # a ListedColormap
        bar_colors = [colors[c] for c in table.index.get_level_values(0)]
        fig = Figure(figsize=(2.3 * len(columns) + 2.5, 0.28 * y + 1.2))
        axes = fig.subplots(1, len(columns), sharey=True, squeeze=False)
        for ax, column in zip(axes[0], columns):
            values = table[column].astype(float)
            finite = values.fillna(0.0)
            ax.barh(ypos, finite, color=bar_colors, height=0.75)
            top = 1.0 if column in ("accuracy", "macro_f1", "ece", "attack_success") else max(finite.max(), 1e-12)
            ax.set_xlim(0, top * 1.3)
            for yy, v in zip(ypos, values):
                if not math.isnan(v):
                    ax.text(v + top * 0.02, yy, f"{int(v)}" if column == "size" else f"{v:.3f}", va="center", fontsize=7)
            ax.set_title(column.replace("_", " "), fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
            for yy, _ in headers[1:]:
                ax.axhline(yy - 0.5, color="0.6", linewidth=0.6)
        first = axes[0][0]
        first.set_yticks(ypos + [yy for yy, _ in headers])
        first.set_yticklabels(list(table.index.get_level_values(1)) + [c.upper() for _, c in headers], fontsize=7)
        for label in first.get_yticklabels()[len(ypos) :]:
            label.set_fontweight("bold")
        first.set_ylim(y - 0.5, -0.5)
        fig.suptitle(f"{self.info['model']} on {self.info['dataset']} ({self.info['examples']} examples)", fontsize=10)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def to_html(self, path: str | Path | None = None) -> str:
        """A self-contained HTML page: the run's info, the table and the chart (inline PNG)."""
        png = io.BytesIO()
        self.figure().savefig(png, format="png", dpi=120)
        chart = base64.b64encode(png.getvalue()).decode("ascii")
        info = "".join(f"<li><b>{k}</b>: {v}</li>" for k, v in self.info.items())
        table = self.table.to_html(float_format=lambda v: f"{v:.4f}", na_rep="", border=0, classes="report")
        html = (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>ssmkit robustness report</title>\n"
            "<style>body{font-family:sans-serif;margin:2em} table.report{border-collapse:collapse;font-size:13px}"
            " .report td,.report th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}</style></head>\n"
            f"<body><h1>Robustness report</h1><ul>{info}</ul>\n{table}\n"
            f"<p><img alt='metrics per slice' src='data:image/png;base64,{chart}'></p></body></html>\n"
        )
        if path is not None:
            Path(path).write_text(html)
        return html
