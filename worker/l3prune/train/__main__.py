"""`python -m l3prune.train ...`, the same as `python -m l3prune train ...`."""
import sys

from . import main

sys.exit(main())
