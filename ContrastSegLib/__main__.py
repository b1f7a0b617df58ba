"""``python -m ContrastSegLib ...`` is the ``contrastseg`` command (and what ``torchrun -m`` starts)."""

from .runtime.stop import stop_on_signals  # noqa: F401  (first: where /proc is missing, its import is the start)
from .runtime.priority import apply_requested_priority

apply_requested_priority()  # before torch starts a thread: they inherit it

from .cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
