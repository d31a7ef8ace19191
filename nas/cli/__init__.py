"""Command lines: thin modules that parse arguments into the library's configuration, call it and print
its report. Each is reachable as ``python -m nas.<command>`` and as ``effv2-nas <command>``
(:mod:`.main`)."""
