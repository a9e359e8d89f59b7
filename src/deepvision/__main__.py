"""`python -m deepvision` (used by torchrun: `torchrun --nproc_per_node 2 -m deepvision train ...`)."""

import sys

from deepvision.cli.main import main

sys.exit(main())
