"""``python -m firmware_bundle`` = ``iotids-bundle``."""

import sys

from firmware_bundle.cli import main

sys.exit(main())
