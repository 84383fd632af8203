"""The test suite, a package so that its helper modules import as ``tests.<module>`` and the
conftest.py files of its directories do not clash (for pytest and mypy alike)."""
