"""Static checks of the Slicer extension (no real Slicer here): every widget the code uses exists in the .ui, CMake
lists every file, the catalog entry is complete; plus the Qt-free dependency and memory decisions. (The module file
itself runs in ``test_slicer_gui.py``.)"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_scene import MODULE_DIR

from ContrastSegLogic import SceneInputError
from ContrastSegLogic import dependencies
from ContrastSegLogic.memory import GIB, plan_device, training_memory_bytes

ROOT = MODULE_DIR.parent
UI_FILE = MODULE_DIR / "Resources" / "UI" / "ContrastSeg.ui"
MODULE_FILE = MODULE_DIR / "ContrastSeg.py"


def ui_widgets() -> dict[str, str]:
    return {w.get("name"): w.get("class") for w in ET.parse(UI_FILE).getroot().iter("widget")}


def test_every_widget_the_module_uses_is_in_the_ui_file():
    widgets = ui_widgets()
    code = "".join(p.read_text(encoding="utf-8") for p in [MODULE_FILE, *(MODULE_DIR / "ContrastSegGui").glob("*.py")])
    used = set(re.findall(r"\bui\.(\w+)", code)) - {"connect"}
    assert len(used) > 30
    missing = sorted(used - set(widgets))
    assert not missing, f"{UI_FILE.name} lacks {missing}"
    names = [w.get("name") for w in ET.parse(UI_FILE).getroot().iter("widget")]
    assert len(names) == len(set(names)), "widget names must be unique"


def test_every_mrml_widget_gets_the_scene():
    root = ET.parse(UI_FILE).getroot()
    connected = {c.findtext("receiver") for c in root.iter("connection")
                 if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    mrml = {name for name, cls in ui_widgets().items() if cls.startswith("qMRML") and cls != "qMRMLWidget"}
    assert mrml and mrml == connected
    custom = {c.findtext("class") for c in root.iter("customwidget")}
    assert {cls for cls in ui_widgets().values() if not cls.startswith("Q")} <= custom


def test_cmake_lists_every_module_file_and_resource():
    cmake = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s+(\S+\.(?:py|ui|png))\s*$", cmake.replace("${MODULE_NAME}", "ContrastSeg"), re.M))
    present = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*")
               if p.suffix in (".py", ".ui", ".png") and "__pycache__" not in p.parts}
    assert listed == present
    assert "WITH_GENERIC_TESTS" in cmake and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake


def test_extension_cmake():
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for required in ("project(ContrastSeg)", 'set(EXTENSION_CATEGORY "Segmentation")', 'set(EXTENSION_DEPENDS "PyTorch")',
                     "EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                     "EXTENSION_SCREENSHOTURLS", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                     "add_subdirectory(ContrastSeg)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                     "include(${Slicer_EXTENSION_CPACK})", "ContrastSegLib/*.py"):
        assert required in cmake, required
    # the catalog entries and the metadata as the index's reviewers check them: test_extensions_index.py


def test_dependencies_are_listed_asked_for_and_installed_without_touching_slicers_own_packages():
    present = lambda name: None if name in ("monai", "tqdm") else object()  # noqa: E731
    plan = dependencies.install_plan("2.5.1", present)
    assert plan.requirements == ("monai>=1.3", "tqdm>=4.60") and not plan.torch_missing
    assert "monai>=1.3" in plan.question() and "about 3 MB in all" in plan.question()
    with pytest.raises(SceneInputError, match="torch 2.1.0\\+cu118 is installed and ContrastSeg needs torch>=2.2"):
        dependencies.install_plan("2.1.0+cu118", present)
    pins = dependencies.protection_constraints({"numpy": "1.26.4", "torch": "2.5.1"}.get)
    assert pins == ["numpy==1.26.4", "torch==2.5.1"]
    assert not dependencies.install_plan("2.5.1", lambda name: None).torch_missing
    arguments = dependencies.pip_arguments(plan.requirements, "/tmp/c.txt")
    assert arguments == '"monai>=1.3" "tqdm>=4.60" --constraint "/tmp/c.txt"'

    installed, asked = [], []

    def pip_install(text):
        constraints = re.search(r'--constraint "([^"]+)"', text).group(1)
        installed.append(Path(constraints).read_text(encoding="utf-8"))

    def ask(question):
        asked.append(question)
        return True
    assert dependencies.ensure_dependencies(pip_install, lambda: True, ask, lambda: "2.5.1", present) == \
        ["monai>=1.3", "tqdm>=4.60"]
    assert len(asked) == 1 and all("==" in line for text in installed for line in text.split())
    with pytest.raises(SceneInputError, match="accept the installation"):
        dependencies.ensure_dependencies(pip_install, lambda: True, lambda q: False, lambda: "2.5.1", present)
    with pytest.raises(SceneInputError, match="needs PyTorch"):
        dependencies.ensure_dependencies(pip_install, lambda: False, ask, lambda: None, present)
    assert dependencies.ensure_dependencies(pip_install, lambda: True, ask, lambda: "2.5.1", lambda name: object()) == []
    assert len(asked) == 2  # nothing to install: nothing asked


# What Slicer 5.8.1 ships (SuperBuild/External_python-numpy.cmake line 41, External_python-scipy.cmake line 40,
# External_python-dicom-requirements.cmake line 61): the same in 5.6.2 and 5.10.0 but for the versions.
SLICER_581 = {"numpy": "1.26.4", "scipy": "1.13.1", "pillow": "10.3.0", "SimpleITK": "2.4.0"}


def test_one_question_counts_torch_and_not_what_slicer_ships():
    """Issue 19, defect 12: scipy ships with Slicer (pinned, never counted); torch's download is in the question."""
    in_slicer = lambda name: object() if name in SLICER_581 else None  # noqa: E731
    plan = dependencies.install_plan(None, in_slicer)
    assert plan.requirements == ("monai>=1.3", "nibabel>=5.0", "tqdm>=4.60", "matplotlib>=3.7")
    question = plan.question()
    assert "scipy>=" not in question and "about 221 MB in all" in question  # 200 + 2.7 + 3.3 + 0.1 + 15.1
    assert "CUDA build, about 3.1 GB" in dependencies.install_plan(None, in_slicer, cuda=True).question()
    assert question.count("?") == 1 and "Nothing else will ask" in question
    pins = dependencies.protection_constraints(SLICER_581.get)
    assert pins == ["numpy==1.26.4", "scipy==1.13.1", "SimpleITK==2.4.0", "pillow==10.3.0"]
    bare = dependencies.install_plan("2.5.1", lambda name: None)  # a Slicer built without scipy: then it counts
    assert "scipy>=1.10" in bare.requirements and bare.download_mb == pytest.approx(59.8)


def test_a_torch_that_cannot_use_slicers_numpy_is_refused_before_anything_is_installed():
    """Slicer 5.10 ships numpy 2.0.2 (kept); torch before 2.3 was built against numpy 1, and on an x86-64 Mac (Slicer
    under Rosetta) pip offers no torch after 2.2.2: one message with the way out, before any question or install."""
    everything = lambda name: object()  # noqa: E731
    assert not dependencies.install_plan("2.2.2", everything, numpy_version="1.26.4", mac_intel=True).torch_missing
    assert dependencies.install_plan("2.5.1", everything, numpy_version="2.0.2").empty
    with pytest.raises(SceneInputError, match="torch 2.2.2 cannot use numpy 2.0.2.*Slicer 5.8"):
        dependencies.install_plan("2.2.2", everything, numpy_version="2.0.2")
    with pytest.raises(SceneInputError, match="Intel.*nothing was installed.*Slicer 5.8"):
        dependencies.install_plan(None, everything, numpy_version="2.0.2", mac_intel=True)
    assert dependencies.install_plan(None, everything, numpy_version="2.0.2").torch_missing  # elsewhere: installable


def test_install_policy_never_asks_where_nobody_can_answer():
    """Issue 19, defects 10 and 11: scripts choose with an argument or a setting; testing mode and no main window
    never install unless told; only the GUI asks."""
    policy = dependencies.install_policy
    assert policy(None, testing=False, main_window=True, environ={}) == dependencies.ASK
    assert policy(None, testing=False, main_window=False, environ={}) == dependencies.NO
    assert policy(None, testing=True, main_window=True, environ={}) == dependencies.NO
    assert policy(True, testing=True, main_window=False, environ={}) == dependencies.YES
    assert policy(False, testing=False, main_window=True, environ={"CONTRASTSEG_INSTALL_PACKAGES": "1"}) == "no"
    assert policy(None, testing=False, main_window=False, environ={"CONTRASTSEG_INSTALL_PACKAGES": "1"}) == "yes"
    assert policy(None, testing=False, main_window=True, environ={"CONTRASTSEG_INSTALL_PACKAGES": "0"}) == "no"
    asked, installed = [], []
    common = dict(torch_version=lambda: None, find_spec=lambda name: None)
    for chosen in (dependencies.NO, dependencies.YES):
        try:
            dependencies.ensure_dependencies(installed.append, lambda: installed.append("torch") or True,
                                             asked.append, policy=chosen, **common)
        except SceneInputError as error:
            assert "CONTRASTSEG_INSTALL_PACKAGES=1" in str(error) and "torch>=2.2, monai>=1.3" in str(error)
    assert asked == [] and installed[0] == "torch" and len(installed) == 2


def test_device_plan_falls_back_to_cpu_with_a_reason():
    need = training_memory_bytes(16, 128, (16, 32, 64, 128, 128, 128))
    assert 1 * GIB < need < 4 * GIB
    asked = []
    gpu = lambda free: lambda index: asked.append(index) or free  # noqa: E731
    # enough GPU memory: "auto" is passed on, the job's torch decides (it may be a CPU-only build)
    assert plan_device("auto", need, gpu(20 * GIB), lambda: 64 * GIB).device == "auto"
    assert plan_device("cuda:1", need, gpu(20 * GIB), lambda: 64 * GIB).device == "cuda:1" and asked[-1] == 1
    short = plan_device("auto", need, gpu(need // 4), lambda: 64 * GIB)
    assert short.device == "cpu" and "GiB free" in short.message and "CPU" in short.message
    absent = plan_device("cuda", need, gpu(None), lambda: 64 * GIB)
    assert absent.device == "cpu" and "no CUDA GPU" in absent.message
    assert plan_device("auto", need, gpu(None), lambda: 64 * GIB).device == "auto"  # the job process chooses
    with pytest.raises(SceneInputError, match="lower the batch size"):
        plan_device("cpu", need, gpu(None), lambda: need // 2)
    assert plan_device("cpu", need, gpu(None), lambda: None).device == "cpu"  # unknown RAM: not checked
