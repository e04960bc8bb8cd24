"""Evaluation tools built on ssmkit's models (import the submodules: they need torch and the
``apps`` extra)."""
