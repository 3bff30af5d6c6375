"""``python -m odenets ...`` is the ``odenets`` console script."""
import sys

from .cli import main

sys.exit(main())
