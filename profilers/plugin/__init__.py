"""What a runtime plugin is made of: the contract (:mod:`.base`), its options (:mod:`.options`) and the
command line every plugin shares (:mod:`.cli`). The registry of runtimes is :mod:`profilers.runtimes`."""
