"""The README's headless example runs as written (here under slicer-core: real MRML, real subprocess jobs) and
leaves a model and one named ``.seg.nrrd`` per segmented scan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from slicer_scene import add_segmentation, new_scene

from ContrastSegLogic.scene_io import read_segmentation_file, read_scalar_volume, write_segmentation_file
from ContrastSegLib.data.phantom import LABEL_NAMES, make_phantom
from ContrastSegLib.io import write_volume

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slicer_headless.py"


def test_headless_example_script(tmp_path, one_torch_thread):
    scene = new_scene()
    for index in range(2):
        image, label = make_phantom(index, seed=5)
        write_volume(image, tmp_path / f"scan{index}.nrrd")
        if index == 0:
            volume = read_scalar_volume(scene, tmp_path / "scan0.nrrd", "scan0")
            segmentation = add_segmentation(scene, volume, label.array, {v: n for v, n in LABEL_NAMES.items() if v})
            write_segmentation_file(segmentation, tmp_path / "scan0.seg.nrrd")
    out = tmp_path / "results"
    done = subprocess.run([sys.executable, str(EXAMPLE), "--labeled", str(tmp_path / "scan0.nrrd"),
                           str(tmp_path / "scan0.seg.nrrd"), "--segment", str(tmp_path / "scan1.nrrd"),
                           "--iterations", "6", "--crop-size", "32", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Fine-tuning (1/1), step 6/6" in done.stdout
    assert (out / "model.pt").stat().st_size > 0
    result = read_segmentation_file(new_scene(), out / "scan1 ContrastSeg.seg.nrrd")
    names = [result.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(result.GetSegmentation().GetNumberOfSegments())]
    assert names == ["LV", "myocardium", "RV"]
