"""Ways of reaching a device that this host cannot time itself: each module wraps one tool or vendor library at
its boundary and hands back per-run times (ms), compute-unit shares and the facts a table's metadata records.

- :mod:`.adb`: an Android phone over adb, timed by LiteRT's ``benchmark_model``.
- :mod:`.coreml_bundle`: Core ML packages converted here, timed on an iPhone by an app of the user's, and their
  timings read back (the fallback for users without Xcode signing).
- :mod:`.coreml_remote`: an iPhone connected to a Mac, through coremltools' remote-device API (Apple's
  model-runner app, built and signed once, then fed every package).
- :mod:`.aihub`: Snapdragon phones hosted by Qualcomm AI Hub (``qai-hub``): compile and profile jobs submitted
  in parallel, with a job ledger beside the table so a rerun never resubmits.

The vendor libraries are optional and imported only inside functions; their result objects are read by pure
parser functions (``parse_*``) that the tests feed with the shapes the real libraries return.
"""
