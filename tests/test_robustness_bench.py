"""TestBench and Report of ssmkit.eval.robustness: each slice's metrics equal the metrics
worked out by hand on that slice's examples, with a plain torch classifier; subpopulation
intervals; identity transformations; padded batches; the report's table, JSON, HTML, PNG."""

import json
import math

import numpy as np
import pytest
import torch
from robustness_data import ConvClassifier, tone_dataset, trained_classifier

from ssmkit.eval import robustness as rb

METRIC_COLUMNS = ["accuracy", "macro_f1", "cross_entropy", "ece"]


def hand_metrics(logits, labels):
    """The four metrics with plain loops over examples, classes and bins."""
    logits, labels = logits.double().tolist(), labels.tolist()
    n = len(labels)
    predicted = [max(range(len(row)), key=row.__getitem__) for row in logits]
    f1 = []
    for c in sorted(set(labels) | set(predicted)):
        tp = sum(p == c and y == c for p, y in zip(predicted, labels))
        fp = sum(p == c and y != c for p, y in zip(predicted, labels))
        fn = sum(p != c and y == c for p, y in zip(predicted, labels))
        f1.append(2 * tp / (2 * tp + fp + fn))
    nll, bins = 0.0, {}
    for row, y, p in zip(logits, labels, predicted):
        top = max(row)
        log_z = top + math.log(sum(math.exp(v - top) for v in row))
        nll += log_z - row[y]
        confidence = math.exp(row[p] - log_z)
        bins.setdefault(min(max(math.ceil(confidence * 15) - 1, 0), 14), []).append((confidence, p == y))
    ece = sum(abs(sum(ok for _, ok in b) - sum(c for c, _ in b)) for b in bins.values()) / n
    return {
        "accuracy": sum(p == y for p, y in zip(predicted, labels)) / n,
        "macro_f1": sum(f1) / len(f1),
        "cross_entropy": nll / n,
        "ece": ece,
    }


def stack(items, indices=None):
    indices = range(len(items)) if indices is None else indices
    return torch.stack([items[i][0] for i in indices]), torch.tensor([items[i][1] for i in indices])


def assert_row_matches(row, logits, labels):
    """Accuracy, F1 and size exactly; CE and ECE to 1e-6 relative: the bench runs the model in
    batches of another size, and float32 logits may round differently (~1e-7 relative)."""
    expected = hand_metrics(logits, labels)
    assert row["size"] == len(labels)
    assert row["accuracy"] == expected["accuracy"] and row["macro_f1"] == pytest.approx(expected["macro_f1"], rel=1e-12)
    assert row["cross_entropy"] == pytest.approx(expected["cross_entropy"], rel=1e-6, abs=1e-9)
    assert row["ece"] == pytest.approx(expected["ece"], rel=1e-6, abs=1e-9)


@pytest.fixture(scope="module")
def data():
    items, metadata = tone_dataset(45, seed=3)
    # Make the task imperfect so that every metric has something to measure.
    for i in range(0, 45, 7):
        items[i] = (items[i][0], (items[i][1] + 1) % 3)
    return items, metadata


def test_metrics_per_slice_equal_hand_computed(data):
    items, metadata = data
    model = trained_classifier()
    other_items, _ = tone_dataset(20, seed=9)
    noise = rb.white_noise(5, seed=2)
    attack = rb.Attack("pgd", 0.1, steps=3)
    loud = rb.ScoreSubpopulation(lambda e: e.x.square().mean().sqrt().item(), [("0%", "50%"), (0.3, 10.0)], name="rms")
    bench = rb.TestBench(
        model,
        items,
        [
            rb.metadata_field("speaker"),
            loud,
            rb.Subpopulation("label 2", lambda e: e.label == 2),
            noise,
            rb.EvalSet("other", other_items),
            attack,
        ],
        metadata=metadata,
        batch_size=16,
        progress=False,
    )
    report = bench.run()
    table = report.table
    x, y = stack(items)
    with torch.no_grad():
        logits = model(x)

    rows = {name: row for (_, name), row in table.iterrows()}
    assert_row_matches(rows["all"], logits, y)
    for speaker in ("ann", "bob", "cy"):
        chosen = [i for i, m in enumerate(metadata) if m["speaker"] == speaker]
        assert_row_matches(rows[f"speaker={speaker}"], logits[chosen], y[chosen])
    rms = x.double().square().mean((1, 2)).sqrt().numpy()
    median = np.percentile(rms, 50)
    quiet = np.flatnonzero(rms < median)
    assert_row_matches(rows["rms 0%-50%"], logits[quiet], y[quiet])
    loud_ones = np.flatnonzero(rms >= 0.3)
    assert_row_matches(rows["rms 0.3-10"], logits[loud_ones], y[loud_ones])
    assert_row_matches(rows["label 2"], logits[y == 2], y[y == 2])
    with torch.no_grad():
        assert_row_matches(rows[noise.name], model(noise(x, index=torch.arange(len(x)))), y)
        ox, oy = stack(other_items)
        assert_row_matches(rows["other"], model(ox), oy)
        # The attack perturbs each batch as the bench forms it (batches of 16 in order).
        attacked = torch.cat([attack.perturb(model, x[s : s + 16], y[s : s + 16], index=torch.arange(s, min(s + 16, 45))) for s in range(0, 45, 16)])
        adv_logits = model(attacked)
    assert_row_matches(rows[attack.name], adv_logits, y)
    was_right, now_wrong = logits.argmax(1) == y, adv_logits.argmax(1) != y
    assert rows[attack.name]["attack_success"] == (was_right & now_wrong).sum().item() / was_right.sum().item()
    assert table["attack_success"].drop(index="attack", level=0).isna().all()


def test_identity_transformations_leave_metrics_unchanged(data):
    items, metadata = data
    identities = [rb.identity(), rb.gain(0), rb.time_shift(0), rb.compose(rb.identity(), rb.speed(1.0), name="chain")]
    table = rb.TestBench(trained_classifier(), items, identities, batch_size=10, progress=False).run().table
    clean = table.loc[("dataset", "all"), ["size", *METRIC_COLUMNS]]
    for t in identities:
        assert table.loc[("transformation", t.name), ["size", *METRIC_COLUMNS]].equals(clean)


def test_score_intervals_by_percentile_and_value():
    items, metadata = tone_dataset(40, seed=4, lengths=(20, 60))
    context = rb.slices.SliceContext(items, metadata)
    quartiles = rb.length_bins().slices(context)
    lengths = np.array([x.shape[0] for x, _ in items])
    cuts = np.percentile(lengths, [0, 25, 50, 75, 100])
    chosen = [set(s.indices) for s in quartiles]
    assert set().union(*chosen) == set(range(40)) and sum(map(len, chosen)) == 40  # a partition
    for (lo, hi), s in zip(zip(cuts[:-1], cuts[1:]), chosen):
        top = hi == lengths.max()
        assert s == {i for i, n in enumerate(lengths) if lo <= n and (n < hi or (top and n == hi))}
    assert [q.name for q in quartiles] == ["length 0%-25%", "length 25%-50%", "length 50%-75%", "length 75%-100%"]
    by_value = rb.length_bins([(0, 30), (30, 1000)], field="duration", name="duration").slices(context)
    durations = [m["duration"] for m in metadata]
    assert by_value[0].indices == [i for i, d in enumerate(durations) if d < 30] == list(range(40))
    assert by_value[1].indices == []
    assert by_value[0].lineage == ("dataset", "subpopulation duration in [0, 30)")


def test_empty_slices_and_a_plain_function_as_model(data):
    items, _ = data
    model = trained_classifier()
    nobody = rb.Subpopulation("nobody", lambda e: False, uses_x=False)
    report = rb.TestBench(lambda x: model(x), items, [nobody], progress=False).run()  # not an nn.Module
    row = report.table.loc[("subpopulation", "nobody")]
    assert row["size"] == 0 and all(math.isnan(row[m]) for m in METRIC_COLUMNS)
    assert json.loads(report.to_json())["rows"][1]["accuracy"] is None


def test_model_runs_in_eval_mode_and_is_restored(data):
    items, _ = data
    torch.manual_seed(1)
    model = torch.nn.Sequential(ConvClassifier(), torch.nn.Dropout(0.5)).train()
    first = rb.TestBench(model, items, progress=False).run().table
    second = rb.TestBench(model, items, progress=False).run().table
    assert first.equals(second) and model.training


class MeanOfValid(torch.nn.Module):
    """Logits from the mean of each row over its valid samples; records the masks it got."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([-4.0, 0.0, 4.0]))
        self.masks = []

    def forward(self, x, mask=None):
        self.masks.append(mask)
        valid = torch.ones(x.shape[:2], dtype=torch.bool) if mask is None else mask
        mean = (x[..., 0] * valid).sum(1) / valid.sum(1)
        return mean[:, None] * self.scale


def test_padded_batches_pass_the_mask():
    items, metadata = tone_dataset(30, seed=6, lengths=(20, 60))
    items = [(x + 0.1 * label, label) for x, label in items]  # the mean tells the class
    model = MeanOfValid()
    table = rb.TestBench(model, items, [rb.speed(2.0)], batch_size=8, pass_mask=True, progress=False).run().table
    assert all(mask is not None for mask in model.masks)
    with torch.no_grad():
        logits = torch.cat([model(x[None]) for x, _ in items])  # one at a time: no padding at all
        faster = [rb.speed(2.0).apply(x[None]) for x, _ in items]
        fast = torch.cat([model(x[:, : n[0]]) for x, n in faster])
    labels = torch.tensor([label for _, label in items])
    assert_row_matches(table.loc[("dataset", "all")], logits, labels)
    assert_row_matches(table.loc[("transformation", "speed x2")], fast, labels)


def test_report_outputs(data, tmp_path, capsys):
    items, metadata = data
    report = rb.TestBench(
        trained_classifier(), items, [rb.rms_bins(), rb.white_noise(0), rb.Attack("fgsm", 0.05)], metadata=metadata, batch_size=16
    ).run()
    assert "robustness" in capsys.readouterr().err  # the progress bar
    table = report.table
    assert list(table.index.names) == ["category", "slice"]
    assert list(dict.fromkeys(table.index.get_level_values(0))) == ["dataset", "subpopulation", "transformation", "attack"]
    assert list(table.columns) == ["size", *METRIC_COLUMNS, "attack_success", "lineage"]

    parsed = json.loads(report.to_json(tmp_path / "report.json"))
    assert parsed == json.loads((tmp_path / "report.json").read_text())
    assert parsed["info"]["examples"] == 45 and parsed["info"]["metrics"] == METRIC_COLUMNS
    assert len(parsed["rows"]) == len(table) and parsed["rows"][0]["attack_success"] is None
    assert parsed["rows"][-1]["accuracy"] == table.iloc[-1]["accuracy"]

    html = report.to_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text() == html
    assert "<table" in html and "noise 0 dB SNR" in html and "data:image/png;base64," in html

    figure = report.figure(tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["accuracy", "macro f1", "cross entropy", "ece", "size", "attack success"]
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert "loudness (RMS) 0%-25%" in labels and "ATTACK" in labels


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda items: rb.TestBench(3, items), TypeError, "model: expected a callable classifier, got int"),
        (lambda items: rb.TestBench(len, 5), TypeError, "dataset: expected an indexable dataset with len(), got int"),
        (lambda items: rb.TestBench(len, items, batch_size=0), ValueError, "batch_size: expected a positive whole number"),
        (lambda items: rb.TestBench(len, items, metrics=["auc"]), ValueError, "metrics: unknown metric 'auc'"),
        (lambda items: rb.TestBench(len, items, ["speaker"]), TypeError, "slices[0]: expected a Slice or a slice builder, got str"),
        (lambda items: rb.TestBench(len, items, metadata=[{}]), ValueError, "metadata: expected one row per example (45), got 1"),
        (lambda items: rb.TestBench(lambda x: x[:, 0, 0], items, progress=False).run(), ValueError, "model: expected logits of shape (45, classes) for a batch of 45, got shape (45,)"),
        (lambda items: rb.TestBench(lambda x: x[:, 0], items, progress=False).run(), ValueError, "model: gives logits for 1 classes, but slice 'all' has labels from 0 to 2"),
        (lambda items: rb.TestBench(len, [(1, 2)], progress=False).run(), ValueError, "dataset[0]: expected x of shape (length,) or (length, channels)"),
        (lambda items: rb.TestBench(len, [3], progress=False).run(), TypeError, "dataset[0]: expected a tuple (x, label, ...), got int"),
        (lambda items: rb.TestBench(len, items, [rb.metadata_field("age")], progress=False).run(), KeyError, "metadata field 'age' is missing"),
        (lambda items: rb.ScoreSubpopulation(len, [(10, "110%")]), ValueError, "intervals: expected a number or a percentile such as '25%', got '110%'"),
        (lambda items: rb.ScoreSubpopulation(len, [(1, 2, 3)]), ValueError, "intervals: expected a non-empty list of (lo, hi) pairs"),
        (lambda items: rb.Slice("s", "attacks"), ValueError, "category: expected one of dataset, subpopulation"),
    ],
)
def test_bad_input_raises_clear_errors(data, make, error, message):
    with pytest.raises(error) as info:
        make(data[0])
    assert message in str(info.value)
