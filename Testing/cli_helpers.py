"""Shared pieces of the command-line tests: calling ``contrastseg`` in-process or as a subprocess, reading its JSON
event lines, tiny training settings, tiny image/label volumes, and the checks every refused input must pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ContrastSegLib.cli import main

ERROR_PREFIX = "contrastseg: error:"
# Small enough for a few seconds on two CPU cores: crop 32 is a multiple of 2 ** (3 - 1).
TINY_TRAINING = ["--channels", "8,16,32", "--crop-size", "32", "--spacing", "4", "--iterations", "5",
                 "--batch-size", "4", "--precision", "fp32", "--device", "cpu"]
FAST_PREDICT = ["--precision", "fp32", "--device", "cpu"]
SPACING = (1.5, 1.5, 4.0)
ORIGIN = (-30.0, -30.0, 10.0)
SHAPE = (6, 40, 40)  # (slices, rows, columns)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``contrastseg ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_subprocess(*argv, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m ContrastSegLib ARGV`` as its own process, on the CPU, stdout and stderr captured (not TTYs);
    ``env`` adds to (or overrides) this process's environment."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "ContrastSegLib", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=300)


def events(stdout: str) -> list[dict]:
    """The JSON event lines of ``stdout`` (each line starting with ``{`` must be one complete JSON object)."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def named(records: list[dict], event: str) -> list[dict]:
    return [r for r in records if r["event"] == event]


def assert_refused(code: int, out: str, err: str, *fragments: str) -> str:
    """Exit status 1, stderr exactly one ``contrastseg: error:`` line holding every fragment (file name, option),
    and an ``error`` event on stdout with the same message. Returns the message."""
    assert code == 1, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), err
    message = lines[0][len(ERROR_PREFIX):].strip()
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    error_events = named(events(out), "error")
    assert len(error_events) == 1 and error_events[0]["message"] == message, out
    return message


def assert_nothing_written(path: Path, root: Path) -> None:
    """``path`` does not exist and no hidden staging (``.partial``) file or folder is left anywhere under ``root``."""
    assert not path.exists() and not path.is_symlink(), path
    leftovers = [p for p in root.rglob("*") if ".partial" in p.name]
    assert not leftovers, leftovers


def write_image(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN, direction=None) -> Path:
    """Write ``array`` (K, J, I) [or any dimension] with the given geometry through SimpleITK."""
    image = sitk.GetImageFromArray(array)
    dimension = image.GetDimension()
    image.SetSpacing(tuple(spacing)[:dimension] + (1.0,) * max(0, dimension - len(spacing)))
    image.SetOrigin(tuple(origin)[:dimension] + (0.0,) * max(0, dimension - len(origin)))
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))
    return path


def blob_arrays(shape=SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy float32 image with a bright disc through every slice, and its uint8 label (1 inside the disc)."""
    rng = np.random.default_rng(seed)
    _, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    disc = np.broadcast_to((j - shape[1] / 2 + 2) ** 2 + (i - shape[2] / 2 - 3) ** 2 < (shape[1] / 5) ** 2, shape)
    image = (100.0 + 400.0 * disc + rng.normal(0.0, 20.0, size=shape)).astype(np.float32)
    return image, disc.astype(np.uint8)


def write_pair(folder: Path, case: str, image: np.ndarray | None = None, label: np.ndarray | None = None,
               image_suffix: str = ".nii.gz", **label_geometry) -> tuple[Path, Path]:
    """``folder/case<suffix>`` + ``folder/case_seg.nii.gz``; ``label_geometry`` overrides the label's spacing or
    origin (to make it disagree with its image)."""
    default_image, default_label = blob_arrays(seed=len(case))
    image_path = write_image(folder / f"{case}{image_suffix}", default_image if image is None else image)
    geometry = {"spacing": SPACING, "origin": ORIGIN, **label_geometry}
    label_path = write_image(folder / f"{case}_seg.nii.gz", default_label if label is None else label, **geometry)
    return image_path, label_path


def file_state(path: Path) -> tuple[bytes, int]:
    """Contents and modification time of a file, to show it was left untouched."""
    return path.read_bytes(), path.stat().st_mtime_ns


# Bad image files: each builder writes ``folder/bad<suffix>`` and returns its path; BAD_IMAGES maps a name to
# (builder, a phrase of the expected error).

def truncated_nifti(folder):
    path = write_image(folder / "bad.nii.gz", blob_arrays()[0])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def random_bytes_nrrd(folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bad.nrrd"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def two_d_image(folder):
    return write_image(folder / "bad.nii.gz", blob_arrays()[0][0])


def four_d_image(folder):
    """A 4-D scalar image of two 3-D frames (not a vector image)."""
    frames = [sitk.GetImageFromArray(array) for array in (blob_arrays()[0], np.zeros(SHAPE, np.float32))]
    image = sitk.JoinSeries(frames)
    image.SetSpacing(SPACING + (1.0,))
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(folder / "bad.nii.gz"))
    return folder / "bad.nii.gz"


def vector_image(folder):
    """A 3-D image with two components per voxel."""
    image = blob_arrays()[0]
    return write_image(folder / "bad.nrrd", np.stack([image, image], axis=-1))


def nan_nifti(folder):
    image = blob_arrays()[0]
    image[2, 5, 5] = np.nan
    return write_image(folder / "bad.nii.gz", image)


def inf_nrrd(folder):
    image = blob_arrays()[0]
    image[1, 7, 9] = np.inf
    return write_image(folder / "bad.nrrd", image)


def one_slice_image(folder):
    return write_image(folder / "bad.nii.gz", blob_arrays()[0][:1])


BAD_IMAGES = {
    "truncated .nii.gz": (truncated_nifti, "truncated"),
    "random bytes .nrrd": (random_bytes_nrrd, "cannot read"),
    "2-D image": (two_d_image, "3-D volume"),
    "4-D image": (four_d_image, "4-D with 2 frames"),
    "2-component image": (vector_image, "2 components per voxel"),
    "NaN voxel": (nan_nifti, "NaN or Inf"),
    "Inf voxel": (inf_nrrd, "NaN or Inf"),
    "one slice": (one_slice_image, "at least 2 slices"),
}


def phantom_model_subprocess(root: Path, subjects: int, iterations: int) -> tuple[Path, Path]:
    """(model, data): a tiny model fine-tuned on ``subjects`` phantoms (family 4) by ``contrastseg finetune`` in a
    subprocess with one torch thread, as the Slicer module runs it."""
    from ContrastSegLib.data.phantom import write_phantom_dataset
    data = write_phantom_dataset(root / "phantoms", subjects, seed=4)
    model = root / "model.pt"
    done = subprocess.run([sys.executable, "-m", "ContrastSegLib", "finetune", "--labeled", str(data), "--out",
                           str(model), "--iterations", str(iterations), "--batch-size", "4", "--crop-size", "32",
                           "--channels", "8,16", "--device", "cpu"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return model, data
