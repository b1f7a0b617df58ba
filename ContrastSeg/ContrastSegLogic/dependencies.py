"""The library's Python packages inside Slicer, installed at the first Apply (never at import time).

torch comes from the PyTorch extension (``PyTorchUtils``, which picks a CUDA or CPU build); the other packages are
installed with ``slicer.util.pip_install`` under a constraints file that pins the numpy, SimpleITK and torch Slicer
already has, so they are never replaced. Both installers are passed in, so this file needs neither Qt nor Slicer.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import tempfile
from typing import Callable, Sequence

# import name -> pip requirement (the library's runtime dependencies besides torch, numpy and SimpleITK)
PACKAGES = {"monai": "monai>=1.3", "nibabel": "nibabel>=5.0", "scipy": "scipy>=1.10", "tqdm": "tqdm>=4.60",
            "matplotlib": "matplotlib>=3.7"}
PROTECTED = ("numpy", "SimpleITK", "torch")  # shipped with Slicer (or its PyTorch extension): pinned, never replaced
TORCH_REQUIREMENT = ">=2.2"


def missing_packages(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """pip requirements of the packages that cannot be imported yet."""
    return [requirement for module, requirement in PACKAGES.items() if find_spec(module) is None]


def protection_constraints(version_of: Callable[[str], str] = importlib.metadata.version) -> list[str]:
    """``name==version`` of every protected package that is installed."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={version_of(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def pip_arguments(requirements: Sequence[str], constraints_file: str) -> str:
    """The argument string for ``slicer.util.pip_install``."""
    return " ".join([*(f'"{r}"' for r in requirements), "--constraint", f'"{constraints_file}"'])


def ensure_dependencies(pip_install: Callable[[str], object], install_torch: Callable[[], bool],
                        torch_available: Callable[[], bool]) -> list[str]:
    """Install what is missing; returns the requirements that were installed. ``install_torch`` returns False when
    the user declined."""
    if not torch_available() and not install_torch():
        raise RuntimeError("ContrastSeg needs PyTorch: install it when asked, or from the PyTorch module "
                           f"(torch{TORCH_REQUIREMENT})")
    missing = missing_packages()
    if missing:
        handle, constraints = tempfile.mkstemp(prefix="contrastseg-constraints-", suffix=".txt")
        with os.fdopen(handle, "w") as stream:
            stream.write("\n".join(protection_constraints()) + "\n")
        try:
            pip_install(pip_arguments(missing, constraints))
        finally:
            os.unlink(constraints)
    return missing
