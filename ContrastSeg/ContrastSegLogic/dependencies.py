"""The library's Python packages inside Slicer, installed at the first job (never at import time), after asking.

torch comes from the PyTorch extension (``PyTorchUtils``, which picks a CUDA or CPU build and asks itself); the other
packages are listed with their approximate download size, and installed with ``slicer.util.pip_install`` once the
user agrees, under a constraints file that pins the numpy, SimpleITK and torch Slicer already has, so they are never
replaced. An installed torch older than the requirement is reported, not silently used. The installers and the
question are passed in, so this file needs neither Qt nor Slicer.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import SceneInputError

# import name -> (pip requirement, approximate download in MB of a current wheel for CPython 3.9-3.12, x86_64)
PACKAGES = {"monai": ("monai>=1.3", 2.7), "nibabel": ("nibabel>=5.0", 3.3), "scipy": ("scipy>=1.10", 38.0),
            "tqdm": ("tqdm>=4.60", 0.1), "matplotlib": ("matplotlib>=3.7", 8.7)}
PROTECTED = ("numpy", "SimpleITK", "torch")  # shipped with Slicer (or its PyTorch extension): pinned, never replaced
TORCH_REQUIREMENT = ">=2.2"


@dataclass(frozen=True)
class InstallPlan:
    """What is missing: pip requirements and their approximate total download (MB); whether torch is needed."""

    requirements: tuple[str, ...]
    download_mb: float
    torch_missing: bool

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.torch_missing

    def question(self) -> str:
        lines = ["ContrastSeg needs Python packages that are not installed yet:"]
        if self.torch_missing:
            lines.append(f"- torch{TORCH_REQUIREMENT}, from the PyTorch extension (it asks before downloading)")
        lines += [f"- {r}" for r in self.requirements]
        if self.requirements:
            lines.append(f"Download: about {self.download_mb:.0f} MB. Slicer's own numpy, SimpleITK and torch are kept.")
        lines.append("Install them now?")
        return "\n".join(lines)


def missing_packages(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """pip requirements of the packages that cannot be imported yet."""
    return [requirement for module, (requirement, _) in PACKAGES.items() if find_spec(module) is None]


def install_plan(torch_version: str | None, find_spec: Callable[[str], object] = importlib.util.find_spec
                 ) -> InstallPlan:
    """What to install, given the installed torch version (None: not installed). An older torch is refused."""
    if torch_version is not None and not satisfies(torch_version, TORCH_REQUIREMENT):
        raise SceneInputError(f"torch {torch_version} is installed and ContrastSeg needs torch{TORCH_REQUIREMENT}; "
                              "update it in the PyTorch module (Uninstall, restart Slicer, Install)")
    requirements = missing_packages(find_spec)
    sizes = {requirement: size for requirement, size in PACKAGES.values()}
    return InstallPlan(tuple(requirements), sum(sizes[r] for r in requirements), torch_version is None)


def satisfies(version: str, requirement: str) -> bool:
    """``version`` (e.g. "2.1.0+cu118") meets a ``>=X.Y`` requirement."""
    wanted = tuple(int(p) for p in requirement.lstrip(">=").split("."))
    found = tuple(int(p) for p in re.findall(r"\d+", version)[:len(wanted)])
    return found >= wanted


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def protection_constraints(version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """``name==version`` of every protected package that is installed."""
    return [f"{name}=={version}" for name in PROTECTED if (version := version_of(name)) is not None]


def pip_arguments(requirements: Sequence[str], constraints_file: str) -> str:
    """The argument string for ``slicer.util.pip_install``."""
    return " ".join([*(f'"{r}"' for r in requirements), "--constraint", f'"{constraints_file}"'])


def ensure_dependencies(pip_install: Callable[[str], object], install_torch: Callable[[], bool],
                        confirm: Callable[[str], bool],
                        torch_version: Callable[[], str | None] = lambda: installed_version("torch"),
                        find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Ask, then install what is missing; returns the requirements installed by pip. A declined question, a
    declined torch install or a failed pip run raise ``SceneInputError`` with what to do."""
    plan = install_plan(torch_version(), find_spec)
    if plan.empty:
        return []
    if not confirm(plan.question()):
        raise SceneInputError("ContrastSeg cannot run without these packages; press the button again and accept the "
                              "installation (an internet connection is needed once)")
    if plan.torch_missing and not install_torch():
        raise SceneInputError(f"ContrastSeg needs PyTorch: accept its installation, or install torch"
                              f"{TORCH_REQUIREMENT} from the PyTorch module")
    if plan.requirements:
        handle, constraints = tempfile.mkstemp(prefix="contrastseg-constraints-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write("\n".join(protection_constraints()) + "\n")
        try:
            pip_install(pip_arguments(plan.requirements, constraints))
        except Exception as error:  # noqa: BLE001 - CalledProcessError (offline, proxy) and anything pip raises
            raise SceneInputError(f"installing {', '.join(plan.requirements)} failed ({error}); check the internet "
                                  "connection or proxy settings, then try again") from error
        finally:
            os.unlink(constraints)
    return list(plan.requirements)
