"""``python -m graflow_async``: see `graflow_async.cli.main`."""

import sys

from graflow_async.cli.main import main

sys.exit(main())
