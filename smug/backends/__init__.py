"""Solver backends: one module per solver family behind the contract in :mod:`smug.solving.contract`.

Solver packages are imported lazily, inside the backend modules, so that
``import smug`` works whichever solvers are installed.
"""
