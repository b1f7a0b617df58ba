"""More hostile inputs through the real CLI: folders that cannot be listed, a hand-edited review.csv, label names
holding control characters or spreadsheet formulas, and inputs that used to earn a misleading message (a 4-D label
map, --channel on a 3-D image, a .png output, a NIfTI as --model, plain-string manifest entries, dangling links,
a label value given twice, a full disk in a folder predict, niftilib's console lines, DICOM slices without .dcm).
Each refusal: one ``contrastseg: error:`` line naming the file or option and the fix, exit 1, nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from cli_helpers import (FAST_PREDICT, SPACING, TINY_TRAINING, assert_nothing_written, assert_refused, blob_arrays,
                         run_cli, run_subprocess, write_image, write_pair)
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from ContrastSegLib.evaluation.report import FORMULA_STARTS, csv_text

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tree_state(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


def _label_folder(folder, cases=("alpha", "beta", "gamma"), suffix="_seg"):
    for n, case in enumerate(cases):
        label = blob_arrays(seed=n)[1]
        label[n, :4, :4] = 1  # the cases differ a little
        write_image(folder / f"{case}{suffix}.nii.gz", label)
    return folder


def _review_csv(folder, cases=("alpha", "beta", "gamma"), scores=("0.5", "0.2", "0.1")):
    lines = ["rank,case,score,mean_uncertainty,uncertain_fraction,label_1_ml,label_1_z,flags,image,prediction,"
             "uncertainty"]
    lines += [f"{n},{case},{score},0.1,0.1,2.0,-0.5,,,," for n, (case, score) in enumerate(zip(cases, scores), 1)]
    (folder / "review.csv").write_text("\n".join(lines) + "\n")


# 1. a folder that cannot be listed --------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_an_unreadable_input_folder_is_named(capsys, tmp_path, model, monkeypatch, command):
    """As root chmod does not stop a listing, so the listing is denied the way the kernel denies it to a user."""
    folder = _label_folder(tmp_path / "locked")
    real_iterdir = Path.iterdir

    def denied(self):
        if Path(self) == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", denied)
    out = tmp_path / ("segs" if command == "predict" else "metrics.csv")
    argv = (["predict", "--model", model, "--input", folder, "--output", out, *FAST_PREDICT] if command == "predict"
            else ["evaluate", "--pred", folder, "--ref", _label_folder(tmp_path / "ref"), "--out", out])
    before = tree_state(tmp_path)
    code, stdout, err = run_cli(capsys, *argv)
    assert_refused(code, stdout, err, str(folder), "cannot list the folder", "Permission denied", "chmod")
    assert tree_state(tmp_path) == before


# 2. a review.csv edited by hand ----------------------------------------------------------------------------------

@pytest.mark.parametrize("edit", ["score not a number", "unknown case"])
def test_a_hand_edited_review_table_is_refused_before_anything_is_written(capsys, tmp_path, edit):
    pred, ref = _label_folder(tmp_path / "pred"), _label_folder(tmp_path / "ref")
    if edit == "score not a number":
        _review_csv(pred, scores=("0.5", "high", "0.1"))
        fragments = ("row 2", "'beta'", "score", "'high' is not a number", "put a number there")
    else:
        _review_csv(pred, cases=("alpha", "beta", "delta"))
        fragments = ("row 3", "'delta'", "no label map in", "remove the row")
    before = tree_state(tmp_path)
    out = tmp_path / "metrics.csv"
    code, stdout, err = run_cli(capsys, "evaluate", "--pred", pred, "--ref", ref, "--out", out)
    assert_refused(code, stdout, err, str(pred / "review.csv"), *fragments)
    assert tree_state(tmp_path) == before


# 3. label names holding control characters and spreadsheet formulas ----------------------------------------------

HOSTILE_NAME = '=HYPERLINK("http://x.example","open")\x1b[2J\nhippocampus'


def _csv_cells(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def _formula_cells(path):
    """Cells a spreadsheet would run: starting with = + - @ and not a number."""
    def number(cell):
        try:
            float(cell)
        except ValueError:
            return False
        return True
    return [c for c in _csv_cells(path) if c.startswith(FORMULA_STARTS) and not number(c)]


def test_label_names_are_cleaned_and_csv_cells_neutralised(capsys, tmp_path, pairs):
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps({"labels": {"1": HOSTILE_NAME}, "cases": [
        {"image": str(pairs / f"{c}.nii.gz"), "label": str(pairs / f"{c}_seg.nii.gz")} for c in ("alpha", "beta")]}))
    model = tmp_path / "model.pt"
    assert run_cli(capsys, "finetune", "--labeled", manifest, "--out", model, *TINY_TRAINING)[0] == 0

    code, out, err = run_cli(capsys, "info", "--model", model)
    assert code == 0, err
    assert "\x1b" not in out
    classes = next(line for line in out.splitlines() if line.startswith("classes"))
    assert classes.endswith('1==HYPERLINK("http://x.example","open")[2J hippocampus'), classes

    segs = tmp_path / "segs"
    code, _, err = run_cli(capsys, "predict", "--model", model, "--input", pairs, "--output", segs, *FAST_PREDICT)
    assert code == 0, err
    ref = tmp_path / "ref"  # the reference label maps alone
    ref.mkdir()
    for case in ("alpha", "beta"):
        (ref / f"{case}.nii.gz").write_bytes((pairs / f"{case}_seg.nii.gz").read_bytes())
    metrics = tmp_path / "metrics.csv"
    code, out, err = run_cli(capsys, "evaluate", "--pred", segs, "--ref", ref, "--out", metrics, "--model", model)
    assert code == 0, err
    assert "\x1b" not in out
    tables = [segs / "review.csv", metrics, tmp_path / "metrics_summary.csv", tmp_path / "metrics_review.csv"]
    for table in tables:
        assert not _formula_cells(table), (table, _formula_cells(table))
        assert all("\x1b" not in cell and "\n" not in cell for cell in _csv_cells(table)), table
    assert "'=HYPERLINK(\"http://x.example\",\"open\")[2J hippocampus_ml" in _csv_cells(segs / "review.csv")
    assert "'=HYPERLINK(\"http://x.example\",\"open\")[2J hippocampus" in _csv_cells(metrics)
    # numbers stay numbers, negative ones included; only text is prefixed
    assert csv_text([{"z": -0.5, "text": "-0.5", "name": "-x", "at": "@sum", "plus": "+1e3"}],
                    ["z", "text", "name", "at", "plus"]).splitlines() == ["z,text,name,at,plus",
                                                                          "-0.5,-0.5,'-x,'@sum,+1e3"]


# 4. inputs that used to earn a misleading message -----------------------------------------------------------------

def _four_d_label(path):
    label = blob_arrays()[1]
    image = sitk.JoinSeries([sitk.GetImageFromArray(label), sitk.GetImageFromArray(label)])
    image.SetSpacing(SPACING + (1.0,))
    image.SetOrigin((-30.0, -30.0, 10.0, 0.0))
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("command", ["finetune", "evaluate"])
def test_a_4d_label_map_is_not_told_to_use_channel(capsys, tmp_path, command):
    """Neither finetune (a training label) nor evaluate (a reference), which has no --channel at all."""
    if command == "finetune":
        data = tmp_path / "data"
        write_pair(data, "good")
        write_pair(data, "bad")
        bad, out = _four_d_label(data / "bad_seg.nii.gz"), tmp_path / "model.pt"
        argv = ["finetune", "--labeled", data, "--out", out, *TINY_TRAINING]
    else:
        (tmp_path / "ref").mkdir()
        bad, out = _four_d_label(tmp_path / "ref" / "bad.nii.gz"), tmp_path / "metrics.csv"
        argv = ["evaluate", "--pred", _label_folder(tmp_path / "pred", ("bad",)), "--ref", tmp_path / "ref",
                "--out", out]
    code, stdout, err = run_cli(capsys, *argv)
    message = assert_refused(code, stdout, err, str(bad), "label map", "4-D", "3-D")
    assert "--channel" not in message
    assert_nothing_written(out, tmp_path)


def test_channel_on_a_3d_image_is_refused(capsys, tmp_path, pairs, model):
    out = tmp_path / "seg.nii.gz"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", pairs / "alpha.nii.gz", "--output",
                                out, "--channel", "3", *FAST_PREDICT)
    assert_refused(code, stdout, err, str(pairs / "alpha.nii.gz"), "--channel 3", "no channels", "leave out")
    assert_nothing_written(out, tmp_path)


def test_a_single_input_with_a_png_output_is_told_to_use_a_volume_file(capsys, tmp_path, pairs, model):
    out = tmp_path / "seg.png"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", pairs / "alpha.nii.gz", "--output",
                                out, *FAST_PREDICT)
    message = assert_refused(code, stdout, err, "--output", str(out), "volume file", ".nii.gz")
    assert "several inputs" not in message
    assert_nothing_written(out, tmp_path)


def test_a_nifti_given_as_model_is_not_a_checkpoint(capsys, tmp_path, pairs):
    out = tmp_path / "seg.nii.gz"
    code, stdout, err = run_cli(capsys, "predict", "--model", pairs / "alpha.nii.gz", "--input",
                                pairs / "beta.nii.gz", "--output", out, *FAST_PREDICT)
    message = assert_refused(code, stdout, err, str(pairs / "alpha.nii.gz"), "not a checkpoint", ".pt")
    assert "Python objects" not in message
    assert_nothing_written(out, tmp_path)


def test_manifest_entries_given_as_plain_strings(capsys, tmp_path, pairs):
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps({"cases": [str(pairs / "alpha.nii.gz"), str(pairs / "beta.nii.gz")]}))
    out = tmp_path / "model.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", manifest, "--out", out, *TINY_TRAINING)
    assert_refused(code, stdout, err, str(manifest), "case 1", "must be an object", '"image"', '"label"')
    assert_nothing_written(out, tmp_path)


@pytest.mark.parametrize("where", ["the input", "in the input folder"])
def test_a_dangling_link_is_named(capsys, tmp_path, pairs, model, where):
    data = tmp_path / "data"
    data.mkdir()
    (data / "alpha.nii.gz").write_bytes((pairs / "alpha.nii.gz").read_bytes())
    link = data / "zeta.nii.gz"
    link.symlink_to(tmp_path / "gone.nii.gz")
    out = tmp_path / ("seg.nii.gz" if where == "the input" else "segs")
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input",
                                link if where == "the input" else data, "--output", out, *FAST_PREDICT)
    assert_refused(code, stdout, err, str(link), "the link points nowhere", "fix the link or remove it")
    assert_nothing_written(out, tmp_path)


def test_a_label_value_given_twice_in_a_manifest_is_refused(capsys, tmp_path, pairs):
    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps({"labels": {"1": "liver", "01": "spleen"}, "cases": [
        {"image": str(pairs / "alpha.nii.gz"), "label": str(pairs / "alpha_seg.nii.gz")}]}))
    out = tmp_path / "model.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", manifest, "--out", out, *TINY_TRAINING)
    assert_refused(code, stdout, err, str(manifest), "label value 1 twice", '"1"', '"01"', "keep one")
    assert_nothing_written(out, tmp_path)


def test_a_full_disk_in_a_folder_predict_names_the_output_folder(capsys, tmp_path, pairs, model, monkeypatch):
    def full(image, path, *args, **kwargs):
        raise RuntimeError("ITK ERROR: NiftiImageIO: No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", full)
    out = tmp_path / "segs"
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", pairs, "--output", out,
                                *FAST_PREDICT)
    message = assert_refused(code, stdout, err, str(out / "alpha_seg.nii.gz"), "writing failed", "free some space")
    assert ".partial" not in message
    assert_nothing_written(out, tmp_path)


def _one_bit_nifti(path, slices):
    bits = np.zeros((16, 16, slices), np.uint8)
    bits[4:10, 5:12, :] = 1
    header = nib.Nifti1Header()
    header.set_data_shape(bits.shape)
    header.set_sform(np.diag([1.5, 1.5, 4.0, 1.0]), 1)
    header["datatype"], header["bitpix"], header["vox_offset"] = 1, 1, 352
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.binaryblock + bytes(4) + np.packbits(bits.ravel(order="F")).tobytes())
    return path


def test_niftilib_console_lines_do_not_reach_stderr(tmp_path, model):
    """ITK's NIfTI library prints "** ERROR" on a 1-bit file (read by the library itself) straight to descriptor 2:
    a subprocess shows what a user sees."""
    _one_bit_nifti(tmp_path / "pred" / "mask.nii", 4)
    _one_bit_nifti(tmp_path / "ref" / "mask.nii", 4)
    done = run_subprocess("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", "--out",
                          tmp_path / "metrics.csv")
    assert done.returncode == 0, done.stderr
    assert "** ERROR" not in done.stderr and "nifti" not in done.stderr.lower(), done.stderr
    image = _one_bit_nifti(tmp_path / "flat" / "one_slice.nii", 1)
    done = run_subprocess("predict", "--model", model, "--input", image, "--output", tmp_path / "seg.nii.gz",
                          *FAST_PREDICT)
    assert_refused(done.returncode, done.stdout, done.stderr, str(image), "at least 2 slices")


def _dicom_slice(path, position, number, size=40):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.2.1125.9.1.{number}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID = "MR", "1.2.826.0.1.3680043.2.1125.9"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.9.1"
    ds.InstanceNumber, ds.ImagePositionPatient = number, [0.0, 0.0, 4.0 * position]
    ds.ImageOrientationPatient, ds.PixelSpacing = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], [1.5, 1.5]
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = blob_arrays(shape=(1, size, size))[0][0].astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_dicom_slices_without_the_dcm_suffix_are_recognised(capsys, tmp_path, model):
    series = tmp_path / "scans" / "series"
    series.mkdir(parents=True)
    for n in range(6):
        _dicom_slice(series / f"IM{n:04d}", n, n + 1)
    out = tmp_path / "seg.nii.gz"
    code, _, err = run_cli(capsys, "predict", "--model", model, "--input", series, "--output", out, *FAST_PREDICT)
    assert code == 0, err
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).shape == (6, 40, 40)
    segs = tmp_path / "segs"  # a dataset folder holding the series folder
    code, _, err = run_cli(capsys, "predict", "--model", model, "--input", tmp_path / "scans", "--output", segs,
                           *FAST_PREDICT)
    assert code == 0, err
    assert (segs / "series_seg.nii.gz").is_file()


# 5. evaluate uses the names the reference folder gives ------------------------------------------------------------

def test_evaluate_names_structures_from_the_reference_dataset_json(capsys, tmp_path):
    pred = _label_folder(tmp_path / "pred")
    ref = _label_folder(tmp_path / "ref", suffix="")
    (ref / "dataset.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "hippocampus"},
        "training": [{"image": "./imagesTr/alpha.nii.gz", "label": "./labelsTr/alpha.nii.gz"}]}))  # not copied
    out = tmp_path / "metrics.csv"
    code, stdout, err = run_cli(capsys, "evaluate", "--pred", pred, "--ref", ref, "--out", out)
    assert code == 0, err
    assert "hippocampus" in stdout and "label_1" not in stdout
    assert {row["structure"] for row in csv.DictReader(out.open())} == {"hippocampus"}
