"""A Slicer-like MRML scene without Slicer's application, for scripts and tests under the ``slicer-core`` wheel.

Inside Slicer nothing here is needed (``slicer.mrmlScene`` and ``slicer.modules`` exist). Under slicer-core,
``ensure_scene()`` creates a scene with the colour, volumes and segmentations logics registered as Slicer does, and
exposes it as ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` so ``slicer.util``'s array helpers work.
"""

from __future__ import annotations

import types


class _Module:
    """What ``slicer.modules.<name>`` offers the helpers: ``logic()``."""

    def __init__(self, logic):
        self._logic = logic

    def logic(self):
        return self._logic


def new_scene():
    """A fresh scene wired like Slicer's; it becomes ``slicer.mrmlScene``."""
    import slicer
    scene = slicer.vtkMRMLScene()
    application = slicer.vtkSlicerApplicationLogic()
    application.SetMRMLScene(scene)
    logics = {}
    for name, cls in (("colors", slicer.vtkSlicerColorLogic), ("volumes", slicer.vtkSlicerVolumesLogic),
                      ("segmentations", slicer.vtkSlicerSegmentationsModuleLogic)):
        logic = cls()
        logic.SetMRMLApplicationLogic(application)
        logic.SetMRMLScene(scene)
        logics[name] = logic
    application.SetModuleLogic("Colors", logics["colors"])
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(**{name: _Module(logic) for name, logic in logics.items()})
    scene._contrastseg_logics = (application, logics)  # alive as long as the scene
    return scene


def ensure_scene():
    """Slicer's scene when there is one, else a new headless one."""
    import slicer
    scene = getattr(slicer, "mrmlScene", None)
    return scene if scene is not None else new_scene()
