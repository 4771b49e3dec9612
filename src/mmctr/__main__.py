"""`python -m mmctr` (and `torchrun -m mmctr`) runs the command line."""

import sys

from mmctr.cli import main

sys.exit(main())
