"""The enhancement HTTP API (``sice serve``): ``create_app`` builds it around one loaded model.

See :mod:`sice.serving.app` and docs/serving.md.
"""
