"""``python -m graflow_async``: see `graflow_async.cli`."""

import sys

from .cli import main

sys.exit(main())
