"""``python -m flowmeter`` = ``iotids-flowmeter``."""

import sys

from flowmeter.cli import main

if __name__ == "__main__":  # importing the module (pkgutil walks, docs) must not run the CLI
    sys.exit(main())
