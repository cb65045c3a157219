"""``python -m dept_vl.cli``: the ``dept-vl`` command."""

import sys

from . import main

sys.exit(main())
