"""Experiment inputs of recbole-eimf (yaml only): search spaces (``hyper/``), tuned defaults
(``tuned/<dataset>/``) and benchmark variants (``benchmark/``).

This folder sits at the repository root so that users edit it in place; a wheel ships it inside
the package as ``recbole_eimf.props``. What every run loads by default (the evaluation protocol,
model, dataset and stage defaults) is in ``recbole_eimf/properties/``.
"""
