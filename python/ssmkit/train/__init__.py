"""Training: :mod:`ssmkit.train.classify` (``ssmkit train classify``) and
:mod:`ssmkit.train.sashimi` (``ssmkit train sashimi``); their options are in
:mod:`ssmkit.train.config`, their command line in :mod:`ssmkit.cli.train`, and the
models come back from their checkpoints with :mod:`ssmkit.models.checkpoint`.
"""
