"""``python -m usdrl_bench``: the command line (so that ``torchrun ... -m usdrl_bench run ...`` works)."""

import sys

from usdrl_bench.cli import main

sys.exit(main())
