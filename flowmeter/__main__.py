"""``python -m flowmeter`` = ``iotids-flowmeter``."""

import sys

from flowmeter.cli import main

sys.exit(main())
