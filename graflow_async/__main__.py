"""``python -m graflow_async``: see `graflow_async.cli`."""

import sys

from graflow_async.cli import main

sys.exit(main())
