"""``python -m trafficlab`` = ``iotids-lab``."""

from trafficlab.cli import main

raise SystemExit(main())
