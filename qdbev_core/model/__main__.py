"""``python -m qdbev_core.model [names...]``: print the model config table with counts."""

import sys

from .summary import describe

print(describe(sys.argv[1:] or None))
