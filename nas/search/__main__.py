"""``python -m nas.search``: the command lives in :mod:`nas.cli.search`."""
import sys

from nas.cli.search import main

if __name__ == "__main__":
    sys.exit(main())
