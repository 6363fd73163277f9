"""``python -m kimchi.cli``: the same as the ``kimchi`` console script."""

import sys

from kimchi.cli.app import main

sys.exit(main())
