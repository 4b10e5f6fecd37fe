"""Solving: the backend contract, the registry, the shared bound search and :func:`smug.solve`.

Nothing here imports a solver or torch; backends (in :mod:`smug.backends`) are
loaded by name through :mod:`smug.solving.registry`.
"""
