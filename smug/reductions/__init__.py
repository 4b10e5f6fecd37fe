"""Reductions: IR -> IR steps with inverses and guarantees (see docs/reductions.md).

:mod:`.base` (``Reduction``, ``Chain``, ``Guarantee``), :mod:`.presolve`,
:mod:`.incumbent` (greedy start, cardinality cuts), :mod:`.relu_bigm`,
:mod:`.integer_scaling`.
"""
