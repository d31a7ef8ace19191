"""Entry point kept for ``python -m nas.describe``: the command lives in :mod:`nas.cli.describe`."""
import sys

from nas.cli.describe import main

if __name__ == "__main__":
    sys.exit(main())
