"""Experiments that reproduce the paper's claims on our data (``qdbev experiment ...``).

Modules: ``paper_table`` (FP32 / standard / progressive / QD-BEV / W8A8 with identical budgets,
several seeds, scored with the official devkit, ``docs/RESULTS.md`` + figure), ``row_archive``
(finished runs kept in git so a table spans sessions), ``vgd_balance`` (size of the two VGD terms at
the start of QAT, which the ``VGDConfig`` defaults are tuned from), ``cross_style`` (a model scored
on the same val scenes rendered in several appearance styles).
"""
