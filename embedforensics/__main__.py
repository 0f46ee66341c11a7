"""``python -m embedforensics`` (also what ``accelerate launch -m embedforensics`` runs)."""

import sys

from embedforensics.cli import main

sys.exit(main())
