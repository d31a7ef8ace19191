"""Ways to reach a device that is not this machine: a phone over adb with LiteRT's ``benchmark_model``
(:mod:`.adb`), and Core ML bundles converted here and timed on an iPhone (:mod:`.coreml_bundle`)."""
