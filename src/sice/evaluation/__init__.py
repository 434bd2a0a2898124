"""Evaluation: metrics, classic baselines, documented protocols, runs with a cache, reports.

``sice eval`` is a thin layer over :func:`evaluate` and :func:`write_report`; the protocols
are written down exactly in docs/evaluation.md.
"""
from __future__ import annotations

from .baselines import BASELINES
from .metrics import DEFAULT_METRICS, METRICS, compute_metrics
from .protocols import PROTOCOLS, EvalItem, items_for
from .report import write_report
from .runner import EvalResult, Record, evaluate

__all__ = ["BASELINES", "METRICS", "DEFAULT_METRICS", "PROTOCOLS", "EvalItem", "EvalResult", "Record",
           "compute_metrics", "evaluate", "items_for", "write_report"]
