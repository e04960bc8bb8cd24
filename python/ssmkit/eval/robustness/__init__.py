"""A robustness test bench for sequence classifiers, after Robustness Gym (Goel et al., 2021).

Four ways to probe a model, each giving slices of an evaluation: subpopulations
(:class:`Subpopulation`, :class:`ScoreSubpopulation`, :func:`length_bins`, :func:`rms_bins`,
:func:`metadata_field`), transformations (:class:`Transformation` and its built-ins),
evaluation sets (:class:`EvalSet`) and adversarial attacks (:class:`Attack`).
:class:`TestBench` evaluates a classifier on all of them and returns a :class:`Report`
(table, chart, JSON, HTML). :func:`audio_suite` is the default suite for audio
classifiers, behind ``ssmkit eval robustness``.

Example::

    from ssmkit.eval import robustness as rb

    bench = rb.TestBench(model, test_set, [
        rb.metadata_field("speaker"), rb.rms_bins(),
        rb.white_noise(10), rb.speed(1.1),
        rb.Attack("pgd", 0.01, norm="linf", bounds=(-1, 1)),
    ])
    report = bench.run()
    report.table; report.figure("report.png"); report.to_html("report.html")
"""

from .attacks import Attack
from .bench import Report, TestBench, collate
from .metrics import METRICS, accuracy, cross_entropy, expected_calibration_error, macro_f1
from .slices import (
    CATEGORIES,
    QUARTILES,
    EvalSet,
    Example,
    MetadataSubpopulation,
    ScoreSubpopulation,
    Slice,
    Subpopulation,
    length_bins,
    metadata_field,
    rms_bins,
)
from .suite import audio_suite
from .transforms import (
    Transformation,
    clipping,
    compose,
    gain,
    identity,
    mu_law,
    segment_mask,
    speed,
    time_shift,
    white_noise,
)

__all__ = [
    "Attack",
    "CATEGORIES",
    "EvalSet",
    "Example",
    "METRICS",
    "MetadataSubpopulation",
    "QUARTILES",
    "Report",
    "ScoreSubpopulation",
    "Slice",
    "Subpopulation",
    "TestBench",
    "Transformation",
    "accuracy",
    "audio_suite",
    "clipping",
    "collate",
    "compose",
    "cross_entropy",
    "expected_calibration_error",
    "gain",
    "identity",
    "length_bins",
    "macro_f1",
    "metadata_field",
    "mu_law",
    "rms_bins",
    "segment_mask",
    "speed",
    "time_shift",
    "white_noise",
]
