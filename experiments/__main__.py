"""``python -m experiments`` is ``python -m experiments.run``."""
import sys

from experiments.run import main

sys.exit(main())
