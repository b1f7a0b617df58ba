"""The README's headless example runs as written (here under slicer-core: real MRML, real subprocess jobs) and
leaves a model and one named ``.seg.nrrd`` per segmented scan; inside Slicer without a main window its first run
installs the packages without a question when told to, and otherwise stops at once (issue 19, defect 10)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from slicer_scene import add_segmentation, new_scene

from ContrastSegLogic import SceneInputError
from ContrastSegLogic.scene_io import read_segmentation_file, read_scalar_volume, write_segmentation_file
from ContrastSegLib.data.phantom import LABEL_NAMES, make_phantom
from ContrastSegLib.io import write_volume

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slicer_headless.py"


@pytest.fixture
def scans(tmp_path):
    """scan0 with its ``.seg.nrrd`` and scan1, as files."""
    scene = new_scene()
    for index in range(2):
        image, label = make_phantom(index, seed=5)
        write_volume(image, tmp_path / f"scan{index}.nrrd")
        if index == 0:
            volume = read_scalar_volume(scene, tmp_path / "scan0.nrrd", "scan0")
            segmentation = add_segmentation(scene, volume, label.array, {v: n for v, n in LABEL_NAMES.items() if v})
            write_segmentation_file(segmentation, tmp_path / "scan0.seg.nrrd")
    return tmp_path


def example_in_slicer(tmp_path, monkeypatch):
    """The example as ``Slicer --no-main-window --python-script`` runs it on a first run: the module's logic (in the
    harness), no main window (``slicer.util.mainWindow()`` is None), torch and the packages not installed yet. A
    question would wait forever there: it fails the test."""
    pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")
    import slicer_app
    from fresh_slicer import FreshSlicer
    session = slicer_app.start(tmp_path / "home")
    session.window.deleteLater()
    monkeypatch.setattr(slicer_app.slicer.util, "mainWindow", lambda: None)
    monkeypatch.setattr(slicer_app.slicer.util, "confirmOkCancelDisplay",
                        lambda *a, **k: pytest.fail("asked a question with no main window: the script would block"))
    monkeypatch.delitem(sys.modules, "ContrastSeg", raising=False)
    spec = importlib.util.spec_from_file_location("slicer_headless_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.Logic.__name__ == "ContrastSegLogic"  # the module's logic, as inside Slicer
    return example, FreshSlicer(monkeypatch)


def arguments(folder, *more, iterations=2):
    """The example's command line on ``scans``, results into ``folder/results``."""
    return ["--labeled", str(folder / "scan0.nrrd"), str(folder / "scan0.seg.nrrd"), "--segment",
            str(folder / "scan1.nrrd"), "--iterations", str(iterations), "--crop-size", "32", "--device", "cpu",
            "--out", str(folder / "results"), *more]


def test_headless_example_script(scans, one_torch_thread):
    out = scans / "results"
    done = subprocess.run([sys.executable, str(EXAMPLE), *arguments(scans, iterations=6)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Fine-tuning (1/1), step 6/6" in done.stdout
    assert (out / "model.pt").stat().st_size > 0
    result = read_segmentation_file(new_scene(), out / "scan1 ContrastSeg.seg.nrrd")
    names = [result.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(result.GetSegmentation().GetNumberOfSegments())]
    assert names == ["LV", "myocardium", "RV"]


@pytest.mark.parametrize("how", ["--install-packages", "CONTRASTSEG_INSTALL_PACKAGES=1"])
def test_first_run_in_slicer_installs_without_a_question_when_told(scans, monkeypatch, how):
    example, fresh = example_in_slicer(scans, monkeypatch)
    if how.startswith("--"):
        options = [how]
    else:
        monkeypatch.setenv(*how.split("="))
        options = []
    absent = scans / "absent.pt"  # the first job's own check ends the run after the installation
    with pytest.raises(Exception, match="absent.pt"):
        example.main(arguments(scans, "--pretrained", str(absent), *options))
    assert fresh.torch_installs == [False]  # PyTorchUtils told not to ask (PyTorchUtils.py line 207)
    assert len(fresh.pip_installs) == 1 and '"monai>=1.3"' in fresh.pip_installs[0]


def test_first_run_in_slicer_without_the_option_stops_at_once_naming_what_is_missing(scans, monkeypatch):
    example, fresh = example_in_slicer(scans, monkeypatch)
    monkeypatch.delenv("CONTRASTSEG_INSTALL_PACKAGES", raising=False)
    with pytest.raises(SceneInputError) as error:
        example.main(arguments(scans))
    assert "torch>=2.2, monai>=1.3, tqdm>=4.60" in str(error.value) and "--install-packages" in str(error.value)
    assert fresh.torch_installs == [] and fresh.pip_installs == []
    assert not (scans / "results" / "model.pt").exists()
