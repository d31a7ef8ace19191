"""Entry point kept for ``python -m nas.calibrate``: the command lives in :mod:`nas.cli.calibrate`."""
import sys

from nas.cli.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
