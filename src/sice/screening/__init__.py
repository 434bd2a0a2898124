"""Subjective screening: people choose each scene's reference among blind candidates.

``store`` keeps the votes (SQLite), ``scenes`` lists what a dataset offers, ``app`` serves the
page (``create_app``), ``results`` counts winners and inter-rater agreement. ``winners`` is what
``sice build-dataset --select votes`` reads.
"""
from .store import winners

__all__ = ["winners"]
