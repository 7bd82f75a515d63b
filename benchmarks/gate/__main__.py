"""``python -m benchmarks.gate ...`` is ``python -m benchmarks gate ...``."""

import sys

from benchmarks.__main__ import main

sys.exit(main(["gate", *sys.argv[1:]]))
