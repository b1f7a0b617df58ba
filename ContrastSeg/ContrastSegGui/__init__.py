"""The Qt side of the ContrastSeg module: the panel (``panel.ContrastSegPanel``), the one GUI <-> parameter node
mapping (``bindings``), the running job's view (``job_view``) and the tables (``tables``). Everything that is not
about widgets lives in the Qt-free ``ContrastSegLogic`` package."""
