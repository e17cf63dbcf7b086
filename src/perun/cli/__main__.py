"""`python -m perun.cli`."""

import sys

from perun.cli import main

sys.exit(main())
