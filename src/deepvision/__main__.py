"""`python -m deepvision` (used by torchrun: `torchrun --nproc_per_node 2 -m deepvision train ...`)."""

import os
import sys

from deepvision.cli.main import main

code = main()
if "TORCHELASTIC_RUN_ID" in os.environ:
    # A torchrun worker has written everything when main returns. Interpreter teardown, racing the threads
    # torch.distributed's backends leave behind, could abort it ("terminate called without an active
    # exception", SIGABRT) after a finished run; so it leaves without that teardown, streams flushed first.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
