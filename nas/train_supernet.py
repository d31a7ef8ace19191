"""Entry point kept for ``python -m nas.train_supernet``: the command lives in :mod:`nas.cli.train`."""
import sys

from nas.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
