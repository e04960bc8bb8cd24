"""Evaluation tools built on ssmkit models (they need the ``apps`` extra: scipy, pandas, matplotlib, tqdm).

- :mod:`ssmkit.eval.datakernel`: compare models by the kNN graphs of their embeddings
  (data kernels): per-datum tests, distances between models, a manifold of models.
"""
