"""How units are timed on a shared, drifting host: the timing protocol and its statistics (:mod:`.protocol`),
interleaved batches (:mod:`.batch`), the probe units that say how fast the host is now (:mod:`.probe`) and
the host's fingerprint and core pinning (:mod:`.host`)."""
