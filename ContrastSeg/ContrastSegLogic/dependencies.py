"""The library's Python packages inside Slicer, installed at the first job (never at import time), after one question.

One question lists everything missing with its download size: torch (installed by the PyTorch extension's
``PyTorchUtils`` without a second question) and the other packages (``slicer.util.pip_install``, under a constraints
file that pins what Slicer already has, so it is never replaced). Scripts and tests choose without a question
(``install_policy``). An installed torch older than the requirement is reported, not silently used. The installers
and the question are passed in, so this file needs neither Qt nor Slicer.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

from .errors import SceneInputError

# import name -> (pip requirement, download in MB of its wheel and of the wheels of its dependencies that Slicer does
# not ship). Measured with `pip download` for CPython 3.9 manylinux x86-64: monai 1.5.2, nibabel 5.3.3 (+
# importlib_resources), scipy 1.13.1, tqdm 4.70.1, matplotlib 3.9.4 (+ contourpy, cycler, fonttools, kiwisolver).
PACKAGES = {"monai": ("monai>=1.3", 2.7), "nibabel": ("nibabel>=5.0", 3.3), "scipy": ("scipy>=1.10", 38.6),
            "tqdm": ("tqdm>=4.60", 0.1), "matplotlib": ("matplotlib>=3.7", 15.1)}
# Slicer 5.6.2, 5.8.1 and 5.10.0 ship numpy, scipy (Slicer_USE_SCIPY is ON), SimpleITK and pillow
# (SuperBuild/External_python-*.cmake); torch comes from the PyTorch extension. Pinned, never replaced, not counted.
PROTECTED = ("numpy", "scipy", "SimpleITK", "pillow", "torch")
TORCH_REQUIREMENT = ">=2.2"
NUMPY2_FIRST_TORCH = (">=2", ">=2.3")  # numpy 2 needs a torch built against it: 2.3 and later
# torch + torchvision and their dependencies as light-the-torch installs them (MB): a CPU build, or a CUDA 12 build
# with its NVIDIA libraries (torch 2.6 for Linux measured: 767 MB + 2040 MB nvidia-* + 253 MB triton).
TORCH_MB = {"cpu": 200.0, "cuda": 3100.0}
INSTALL_SETTING = "CONTRASTSEG_INSTALL_PACKAGES"  # environment: 1 installs without asking, 0 never installs
ASK, YES, NO = "ask", "yes", "no"


@dataclass(frozen=True)
class InstallPlan:
    """What is missing: pip requirements and their download (MB); torch's download (0: installed)."""

    requirements: tuple[str, ...]
    download_mb: float
    torch_mb: float = 0.0

    @property
    def torch_missing(self) -> bool:
        return self.torch_mb > 0

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.torch_missing

    @property
    def names(self) -> list[str]:
        return ([f"torch{TORCH_REQUIREMENT}"] if self.torch_missing else []) + list(self.requirements)

    def question(self) -> str:
        lines = ["ContrastSeg needs Python packages that are not installed yet:"]
        if self.torch_missing:
            build = "CUDA" if self.torch_mb >= TORCH_MB["cuda"] else "CPU"
            lines.append(f"- torch{TORCH_REQUIREMENT} and torchvision, by the PyTorch extension ({build} build, "
                         f"about {_size(self.torch_mb)})")
        lines += [f"- {r}" for r in self.requirements]
        lines.append(f"Download: about {_size(self.download_mb + self.torch_mb)} in all; what Slicer already has "
                     "(numpy, scipy, SimpleITK, pillow) is kept. Nothing else will ask.")
        lines.append("Install them now?")
        return "\n".join(lines)


def _size(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{max(mb, 1):.0f} MB"


def missing_packages(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """pip requirements of the packages that cannot be imported yet."""
    return [requirement for module, (requirement, _) in PACKAGES.items() if find_spec(module) is None]


def install_plan(torch_version: str | None, find_spec: Callable[[str], object] = importlib.util.find_spec,
                 cuda: bool = False, numpy_version: str | None = None, mac_intel: bool = False) -> InstallPlan:
    """What to install, given the installed torch version (None: not installed) and whether light-the-torch will
    find an NVIDIA driver (``cuda``). An older torch is refused, and so is a torch that cannot use Slicer's numpy
    (``numpy_version``) or could not be installed for it (``mac_intel``: x86-64 macOS), before anything is
    installed."""
    if torch_version is not None and not satisfies(torch_version, TORCH_REQUIREMENT):
        raise SceneInputError(f"torch {torch_version} is installed and ContrastSeg needs torch{TORCH_REQUIREMENT}; "
                              "update it in the PyTorch module (Uninstall, restart Slicer, Install)")
    _check_numpy_for_torch(torch_version, numpy_version, mac_intel)
    requirements = missing_packages(find_spec)
    sizes = {requirement: size for requirement, size in PACKAGES.values()}
    torch_mb = 0.0 if torch_version is not None else TORCH_MB["cuda" if cuda else "cpu"]
    return InstallPlan(tuple(requirements), sum(sizes[r] for r in requirements), torch_mb)


def _check_numpy_for_torch(torch_version: str | None, numpy_version: str | None, mac_intel: bool) -> None:
    """torch builds before 2.3 were compiled against numpy 1 and cannot exchange arrays with numpy 2 (Slicer 5.10
    ships 2.0.2, kept); on x86-64 macOS, where Slicer runs under Rosetta, pip offers no torch after 2.2.2."""
    if numpy_version is None or not satisfies(numpy_version, NUMPY2_FIRST_TORCH[0]):
        return
    if torch_version is not None and not satisfies(torch_version, NUMPY2_FIRST_TORCH[1]):
        first = NUMPY2_FIRST_TORCH[1].lstrip(">=")
        raise SceneInputError(f"torch {torch_version} cannot use numpy {numpy_version}, which this Slicer ships: "
                              f"update torch to {first} or later in the PyTorch module; where none is offered "
                              "(Intel macOS), use Slicer 5.8, whose numpy 1.26 works with torch 2.2")
    if torch_version is None and mac_intel:
        raise SceneInputError(f"this Slicer ships numpy {numpy_version}, and on an Intel (x86-64) Mac the newest "
                              "torch pip offers, 2.2.2, cannot use it: nothing was installed. Use Slicer 5.8 on "
                              "this Mac (numpy 1.26), or the contrastseg command line in a Python of your own")


def mac_intel() -> bool:
    """Slicer runs as x86-64 on this Mac (an Intel Mac, or under Rosetta)."""
    return platform.system() == "Darwin" and platform.machine() == "x86_64"


def nvidia_driver_present() -> bool:
    """light-the-torch picks a CUDA build where it finds the NVIDIA driver (``nvidia-smi``)."""
    return shutil.which("nvidia-smi") is not None


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


def install_policy(install: Optional[bool], testing: bool, main_window: bool,
                   environ: Mapping[str, str] = os.environ) -> str:
    """``YES`` (install without asking), ``NO`` (never install) or ``ASK``: ``install`` when given, else the
    ``CONTRASTSEG_INSTALL_PACKAGES`` setting, else NO in testing mode (the factory tests install nothing) or
    without a main window (nobody could answer), else ASK."""
    if install is not None:
        return YES if install else NO
    setting = environ.get(INSTALL_SETTING, "").strip().lower()
    if setting:
        return YES if setting in ("1", "yes", "true", "on") else NO
    return NO if testing or not main_window else ASK


def ensure_dependencies(pip_install: Callable[[str], object], install_torch: Callable[[], bool],
                        confirm: Callable[[str], bool],
                        torch_version: Callable[[], str | None] = lambda: installed_version("torch"),
                        find_spec: Callable[[str], object] = importlib.util.find_spec, *, policy: str = ASK
                        ) -> list[str]:
    """Install what is missing after one question (``policy`` ASK; YES installs without it, NO refuses); returns
    the requirements installed by pip. ``install_torch`` must not ask again. A refusal, a declined question or
    torch install, or a failed pip run raise ``SceneInputError`` with what to do."""
    plan = install_plan(torch_version(), find_spec, nvidia_driver_present(), installed_version("numpy"),
                        mac_intel())
    if plan.empty:
        return []
    if policy == NO:
        raise SceneInputError(f"ContrastSeg needs {', '.join(plan.names)}, not installed, and will not install them "
                              f"here: set {INSTALL_SETTING}=1, or call ensure_dependencies(install=True) (the "
                              "headless example: --install-packages)")
    if policy == ASK and not confirm(plan.question()):
        raise SceneInputError("ContrastSeg cannot run without these packages; press the button again and accept the "
                              "installation (an internet connection is needed once)")
    if plan.torch_missing and not install_torch():
        raise SceneInputError(f"ContrastSeg needs PyTorch: install torch{TORCH_REQUIREMENT} from the PyTorch module")
    if plan.requirements:
        _pip_install(pip_install, plan.requirements)
    return list(plan.requirements)


def _pip_install(pip_install: Callable[[str], object], requirements: Sequence[str]) -> None:
    """``pip_install`` of ``requirements`` under a temporary constraints file of the protected packages."""
    handle, constraints = tempfile.mkstemp(prefix="contrastseg-constraints-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write("\n".join(protection_constraints()) + "\n")
    try:
        pip_install(pip_arguments(requirements, constraints))
    except Exception as error:  # noqa: BLE001 - CalledProcessError (offline, proxy) and anything pip raises
        raise SceneInputError(f"installing {', '.join(requirements)} failed ({error}); check the internet "
                              "connection or proxy settings, then try again") from error
    finally:
        os.unlink(constraints)
