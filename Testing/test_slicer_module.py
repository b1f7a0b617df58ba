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


def test_extension_cmake_and_catalog_entry():
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for required in ("project(ContrastSeg)", 'set(EXTENSION_CATEGORY "Segmentation")', 'set(EXTENSION_DEPENDS "PyTorch")',
                     "EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL",
                     "EXTENSION_SCREENSHOTURLS", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                     "add_subdirectory(ContrastSeg)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                     "include(${Slicer_EXTENSION_CPACK})", "ContrastSegLib/*.py"):
        assert required in cmake, required
    urls = re.findall(r"raw\.githubusercontent\.com/[^/]+/[^/]+/main/([^\s\"]+)", cmake)
    assert {"Screenshots/ContrastSeg-panel-training.png", "Screenshots/ContrastSeg-panel-after-segment.png"} <= set(urls)
    for url in urls:
        assert (ROOT / url).is_file(), url  # icon and screenshots are in the repository
    entry = json.loads((ROOT / "ContrastSeg.json").read_text(encoding="utf-8"))
    assert entry["build_dependencies"] == ["PyTorch"] and entry["category"] == "Segmentation"
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["scm_url"].split("/")[-1].startswith("Slicer") and {"scm_revision", "tier"} <= set(entry)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("BSD 3-Clause")
    assert (MODULE_DIR / "Resources/Icons/ContrastSeg.png").read_bytes()[:4] == b"\x89PNG"


def test_dependencies_are_listed_asked_for_and_installed_without_touching_slicers_own_packages():
    present = lambda name: None if name in ("monai", "tqdm") else object()  # noqa: E731
    plan = dependencies.install_plan("2.5.1", present)
    assert plan.requirements == ("monai>=1.3", "tqdm>=4.60") and not plan.torch_missing
    assert "monai>=1.3" in plan.question() and "about 3 MB" in plan.question()
    with pytest.raises(SceneInputError, match="torch 2.1.0\\+cu118 is installed and ContrastSeg needs torch>=2.2"):
        dependencies.install_plan("2.1.0+cu118", present)
    pins = dependencies.protection_constraints({"numpy": "1.26.4", "torch": "2.5.1"}.get)
    assert pins == ["numpy==1.26.4", "torch==2.5.1"]
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
