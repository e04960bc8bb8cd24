"""Evaluation tools built on ssmkit models (they need torch and the ``apps`` extra:
scipy, pandas, matplotlib, tqdm). Import the submodules:

- :mod:`ssmkit.eval.robustness`: a test bench of slices (subpopulations,
  transformations, evaluation sets, attacks) with per-slice metrics, charts and reports.
- :mod:`ssmkit.eval.datakernel`: compare models by the kNN graphs of their embeddings
  (data kernels): per-datum tests, distances between models, a manifold of models.
- :mod:`ssmkit.eval.samples`: scores of generated audio (Inception Score and kin).
- :mod:`ssmkit.eval.nll`: SaShiMi's negative log-likelihood of mu-law clips.

Their commands are in :mod:`ssmkit.cli`; trained models load with :mod:`ssmkit.models.checkpoint`.
"""
