"""``python -m qdbev_core`` == ``qdbev``."""

import sys

from .cli.main import main

sys.exit(main())
