"""A checkpoint's metadata read without torch: the Slicer module describes a chosen model before torch is installed
(issue 19, defect 7), and reading it runs nothing the file names."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.models import UNet2D, UNetConfig
from ContrastSegLib.runtime.checkpoint import Checkpoint, load_checkpoint, read_metadata, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent
LABELS = {"values": [0, 1, 2], "names": ["background", "LV", "RV"], "colors": [[0, 0, 0], [255, 0, 0], [0, 0, 255]]}


def finetuned(tmp_path: Path) -> Path:
    """A small fine-tuned checkpoint with optimizer state and random-number state, as training writes one."""
    model = UNet2D(UNetConfig(num_classes=3, channels=(4, 8)))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.zeros(1, 1, 16, 16)).sum().backward()
    optimizer.step()
    metadata = {"stage": "finetune", "architecture": model.config.to_json(), "labels": LABELS, "step": 30}
    return save_checkpoint(Checkpoint(model.state_dict(), metadata, optimizer.state_dict(),
                                      {"rng": torch.get_rng_state()}), tmp_path / "model.pt")


def run_without_torch(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python where ``import torch`` fails, as in Slicer before the module installed it."""
    blocker = "import sys; sys.modules['torch'] = None\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "ContrastSeg"), str(ROOT)]),
           "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-c", blocker + code], capture_output=True, text=True, timeout=300,
                          env=env, cwd=str(cwd))


def test_the_module_describes_a_model_before_torch_is_installed(tmp_path):
    path = finetuned(tmp_path)
    done = run_without_torch(
        "from ContrastSegLogic.checkpoints import describe_checkpoint, finetuned_classes\n"
        f"print(describe_checkpoint({str(path)!r}))\n"
        f"print([c.name for c in finetuned_classes({str(path)!r})])\n"
        "print(sys.modules['torch'])\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Segments LV, RV (fine-tuned, 30 steps)", "['LV', 'RV']", "None"]


def test_the_panel_shows_the_chosen_model_before_torch_is_installed(tmp_path):
    """The panel in the Qt harness (``slicer_app``): set up, a model chosen, left and entered again."""
    path = finetuned(tmp_path)
    done = run_without_torch(
        "from pathlib import Path\n"
        "import slicer_app\n"
        f"session = slicer_app.start(Path({str(tmp_path / 'home')!r}))\n"
        "session.load_module()\n"
        "session.enter()\n"
        "ui = session.widget.panel.ui\n"
        f"ui.segmentModelPath.currentPath = {str(path)!r}\n"
        "session.exit()\n"
        "session.enter()\n"
        "print(repr(ui.modelClassesLabel.text), len(slicer_app.SLOT_ERRORS), sys.modules['torch'])\n",
        cwd=ROOT / "Testing")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "'Segments LV, RV (fine-tuned, 30 steps)' 0 None", done.stderr


def test_without_torch_a_file_that_is_no_checkpoint_gets_one_line(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a model")
    done = run_without_torch("from ContrastSegLogic.checkpoints import describe_checkpoint\n"
                             f"print(describe_checkpoint({str(text)!r}))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"{text}: not a readable checkpoint — it is a file PyTorch did not write, not a "
                                   "checkpoint; pass the .pt file written by contrastseg finetune")


def test_metadata_read_without_torch_is_what_loading_reads(tmp_path):
    path = finetuned(tmp_path)
    assert read_metadata(path) == load_checkpoint(path).metadata


class Plant:
    """Unpickled by a plain unpickler, it creates ``marker`` (``open(marker, "w")``): code run by reading a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_reading_metadata_runs_nothing_the_file_names(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "planted.pt"
    torch.save({"format": "contrastseg-checkpoint", "format_version": 1, "metadata": json.dumps({"stage": "x"}),
                "model": {"w": Plant(marker)}}, path)
    assert read_metadata(path) == {"stage": "x"}
    with pytest.raises(ContrastSegError, match="holds Python objects"):
        load_checkpoint(path)
    torch.save(Plant(marker), path)
    with pytest.raises(ContrastSegError, match="not a ContrastSeg checkpoint"):
        read_metadata(path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "no data.pkl", "legacy format", "newer format"])
def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line(tmp_path, damage):
    path = finetuned(tmp_path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "no data.pkl":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/version", "3")
    elif damage == "legacy format":
        torch.save({"format": "contrastseg-checkpoint"}, path, _use_new_zipfile_serialization=False)
    else:
        torch.save({"format": "contrastseg-checkpoint", "format_version": 2, "metadata": "{}"}, path)
    with pytest.raises(ContrastSegError) as error:
        read_metadata(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)
