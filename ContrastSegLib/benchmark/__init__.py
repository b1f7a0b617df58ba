"""The benchmark behind ``contrastseg benchmark``: fixed dataset splits, profiles, the resumable cell runner and its
report. Entry point: :func:`ContrastSegLib.benchmark.runner.run_benchmark`.

Modules: ``profiles`` (run sizes), ``datasets`` (conventions and adapters), ``split_files`` + ``splits/*.json`` (the
fixed splits), ``cells`` (method × |X_L| × seed), ``pipeline`` (one method's chain, shared with the demo),
``runner``, ``settings`` (the OUT folder's record), ``report`` and ``environment``.
"""
