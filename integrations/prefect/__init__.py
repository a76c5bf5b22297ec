"""Prefect tasks and a credentials block for deployflow (``pip install 'deployflow[prefect]'``)."""
