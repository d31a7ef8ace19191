"""Entry point kept for ``python -m nas.validate``: the command lives in :mod:`nas.cli.validate`."""
import sys

from nas.cli.validate import main

if __name__ == "__main__":
    sys.exit(main())
