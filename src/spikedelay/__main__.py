"""``python -m spikedelay`` (also what ``torchrun -m spikedelay train ...`` runs)."""

import sys

from spikedelay.cli import main

sys.exit(main())
