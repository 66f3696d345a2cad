"""``python -m qdbev_ros`` == ``qdbev`` (the core verbs plus ``play`` and ``bag record``)."""

import sys

from .cli import main

sys.exit(main())
