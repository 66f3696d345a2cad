"""Experiments that reproduce the paper's claims on our data (``qdbev experiment ...``).

Modules: ``paper_table`` (FP32 / standard / progressive / QD-BEV / W8A8 with identical budgets,
scored with the official devkit, ``docs/RESULTS.md`` + figure), ``vgd_balance`` (size of the
two VGD terms at the start of QAT, which the ``VGDConfig`` defaults are tuned from).
"""
