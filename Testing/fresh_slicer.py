"""A Slicer whose Python lacks torch and the module's packages, for the installation tests (in the harness).

``PyTorchUtils`` stands in for SlicerPyTorch's module (fepegar/SlicerPyTorch e1c85cc, ``PyTorchUtils/PyTorchUtils.py``):
``PyTorchUtilsLogic().installTorch(askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
torchvisionVersionRequirement=None)`` (line 194) asks with ``slicer.util.confirmOkCancelDisplay`` only when
``askConfirmation`` is true and ``slicer.app.commandOptions().testingEnabled`` is false (line 207), returns None when
declined (lines 212-214), else installs and returns ``torch`` (lines 224-227). ``slicer.app.testingEnabled()`` and
``commandOptions().testingEnabled`` follow ``testing`` (Slicer's ``--testing``). Installs are recorded, not done; what
they install then counts as installed. With ``forbid`` an install fails the test at once.
"""

from __future__ import annotations

import sys
import types

from slicer_scene import slicer  # the module folder on sys.path

from ContrastSegLogic import dependencies  # noqa: E402


class FreshSlicer:
    """Installs are recorded in ``torch_installs`` (the ``askConfirmation`` of each) and ``pip_installs``."""

    def __init__(self, monkeypatch, missing=("monai>=1.3", "tqdm>=4.60"), testing=False, forbid=False):
        self.torch_installs: list[bool] = []
        self.pip_installs: list[str] = []
        self.torch_version, self.missing, self.testing, self.forbid = None, list(missing), testing, forbid
        self.real_version = real_version = dependencies.installed_version
        monkeypatch.setattr(dependencies, "installed_version",
                            lambda name: self.torch_version if name == "torch" else real_version(name))
        monkeypatch.setattr(dependencies, "missing_packages", lambda find_spec=None: list(self.missing))
        monkeypatch.setattr(dependencies, "nvidia_driver_present", lambda: False, raising=False)
        monkeypatch.setattr(slicer.util, "pip_install", self.pip_install)
        monkeypatch.setattr(slicer.app, "testingEnabled", lambda: testing, raising=False)
        monkeypatch.setattr(slicer.app, "commandOptions", lambda: types.SimpleNamespace(testingEnabled=testing),
                            raising=False)
        logic = types.SimpleNamespace(installTorch=self.install_torch)
        monkeypatch.setitem(sys.modules, "PyTorchUtils",
                            types.SimpleNamespace(PyTorchUtilsLogic=lambda: logic))

    def pip_install(self, arguments: str) -> None:
        assert not self.forbid, f"pip_install({arguments}) where nothing may be installed"
        self.pip_installs.append(arguments)
        self.missing = []

    def install_torch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                      torchvisionVersionRequirement=None):
        assert not self.forbid, "installTorch() where nothing may be installed"
        self.torch_installs.append(askConfirmation)
        if askConfirmation and not slicer.app.commandOptions().testingEnabled:
            if not slicer.util.confirmOkCancelDisplay("PyTorch will be downloaded and installed using "
                                                      "light-the-torch. The process might take some minutes."):
                return None
        self.torch_version = self.real_version("torch")  # light-the-torch's pick: the newest for this platform
        return types.SimpleNamespace(__version__=self.torch_version)
