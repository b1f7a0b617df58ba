"""``python -m ContrastSegLib ...`` is the ``contrastseg`` command (and what ``torchrun -m`` starts)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
