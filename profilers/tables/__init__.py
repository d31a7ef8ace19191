"""Latency tables: :class:`~profilers.tables.table.LatencyTable` and its
:class:`~profilers.tables.meta.TableMeta` (locating, reading, checking, appending, merging;
:mod:`.table`, :mod:`.meta`), and table runs that measure what a table lacks (:mod:`.runs`)."""
