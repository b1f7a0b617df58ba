"""The ``contrastseg`` command end to end on phantoms: phantom -> split -> finetune (with a split, from a CSV
manifest, from an earlier checkpoint) -> predict one file and a folder -> evaluate; help, version, the checkpoint
format, JSON progress events, and a split that would put a test case into training."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from cli_helpers import (FAST_PREDICT, TINY_TRAINING, assert_refused, events, named, run_cli, run_subprocess)

from ContrastSegLib import __version__
from ContrastSegLib.cli import main
from ContrastSegLib.data.discovery import discover
from ContrastSegLib.data.splits import check_not_test, load_split
from ContrastSegLib.errors import ContrastSegError

STRUCTURES = ["LV", "myocardium", "RV"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def phantoms(workspace):
    folder = workspace / "phantoms"
    assert main(["phantom", "--out", str(folder), "--n", "4"]) == 0
    return folder


@pytest.fixture(scope="module")
def split_file(workspace, phantoms):
    path = workspace / "split.json"
    assert main(["split", "--data", str(phantoms), "--out", str(path), "--labeled", "2", "--test", "1",
                 "--validation", "1"]) == 0
    return path


@pytest.fixture(scope="module")
def trained(workspace, phantoms, split_file):
    """One fine-tuning run as a real subprocess: (checkpoint path, completed process)."""
    path = workspace / "model.pt"
    process = run_subprocess("finetune", "--labeled", phantoms, "--split", split_file, "--out", path,
                             *TINY_TRAINING, "--validate-every", "5")
    assert process.returncode == 0, process.stderr
    return path, process


def _grid(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


@pytest.mark.parametrize("command, options", [
    ("phantom", ["--out", "--n", "--seed"]),
    ("split", ["--data", "--out", "--labeled", "--validation", "--test"]),
    ("finetune", ["--labeled", "--out", "--split", "--init", "--iterations", "--channels", "--crop-size",
                  "--spacing", "--device", "--overwrite"]),
    ("pretrain", ["--unlabeled", "--out", "--init", "--stage", "--overwrite", "--continue"]),
    ("predict", ["--model", "--input", "--output", "--probabilities", "--uncertainty", "--channel", "--overwrite"]),
    ("evaluate", ["--pred", "--ref", "--out", "--model"]),
    ("info", ["--model", "--json"]),
    ("demo", ["--out", "--subjects", "--iterations"]),
])
def test_help_of_every_subcommand(capsys, command, options):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: contrastseg {command}")
    for option in options:
        assert option in text, option


def test_version_and_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"contrastseg {__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("phantom", "split", "finetune", "predict", "evaluate", "demo"):
        assert command in text


def test_phantom_folder_is_a_decathlon_dataset(phantoms):
    description = json.loads((phantoms / "dataset.json").read_text())
    assert description["labels"] == {"0": "background", "1": "LV", "2": "myocardium", "3": "RV"}
    dataset = discover(phantoms)
    assert dataset.ids == ("phantom_000", "phantom_001", "phantom_002", "phantom_003")
    assert all(case.label is not None for case in dataset.cases)


def test_split_is_written_and_reused(capsys, phantoms, split_file):
    split = load_split(split_file)
    sizes = {group: len(ids) for group, ids in split.groups.items()}
    assert sizes == {"train_labeled": 2, "train_unlabeled": 0, "validation": 1, "test": 1}
    assert sorted(sum(split.groups.values(), ())) == sorted(discover(phantoms).ids)
    before = split_file.read_bytes()
    code, out, _ = run_cli(capsys, "split", "--data", phantoms, "--out", split_file, "--labeled", 2, "--test", 1,
                           "--validation", 1)
    assert code == 0 and split.groups["test"][0] in out
    assert split_file.read_bytes() == before
    code, out, err = run_cli(capsys, "split", "--data", phantoms, "--out", split_file, "--labeled", 1, "--test", 1,
                             "--validation", 1)
    assert_refused(code, out, err, str(split_file), "train_labeled 2 (asked 1)")
    assert split_file.read_bytes() == before


def test_finetune_subprocess_reports_json_events(trained, split_file):
    path, process = trained
    records = events(process.stdout)
    plain = [line for line in process.stdout.splitlines() if line.strip() and not line.startswith("{")]
    assert plain == [line for line in plain if line.startswith("wrote ")] and len(plain) == 1
    assert [r["event"] for r in records][0] == "started" and records[-1]["event"] == "finished"
    assert all(r["stage"] == "finetune" for r in records)
    started = named(records, "started")[0]
    assert started["total"] == 5 and started["validation_volumes"] == 1
    progress = named(records, "progress")
    assert progress and progress[-1]["step"] == progress[-1]["total"] == 5
    for record in progress:
        assert {"stage", "step", "total", "loss", "eta_s"} <= set(record)
        assert np.isfinite(record["loss"]) and record["eta_s"] >= 0
    assert named(records, "checkpoint") == [{"event": "checkpoint", "stage": "finetune", "path": str(path),
                                             "step": 5}]
    assert named(records, "finished")[0]["checkpoint"] == str(path)
    validation = [r["message"] for r in named(records, "log") if "validation Dice" in r["message"]]
    assert validation and validation[0].startswith("step 5: validation Dice")
    assert process.stderr.strip() == ""


def test_checkpoint_format_and_metadata(trained, split_file):
    path, _ = trained
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["format"] == "contrastseg-checkpoint"
    assert all(isinstance(v, torch.Tensor) for v in payload["model"].values())
    metadata = json.loads(payload["metadata"])
    assert metadata["stage"] == "finetune"
    assert metadata["library_version"] == __version__
    assert metadata["architecture"]["channels"] == [8, 16, 32]
    assert metadata["architecture"]["num_classes"] == 4
    assert metadata["labels"]["values"] == [0, 1, 2, 3]
    assert metadata["labels"]["names"] == ["background", *STRUCTURES]
    assert len(metadata["labels"]["colors"]) == 4 and all(len(c) == 3 for c in metadata["labels"]["colors"])
    assert metadata["preprocessing"]["crop_size"] == 32 and metadata["preprocessing"]["target_spacing"] == 4
    assert metadata["config"]["iterations"] == 5 and metadata["config"]["batch_size"] == 4
    split = load_split(split_file)
    assert metadata["data"]["train_cases"] == list(split.groups["train_labeled"])
    assert metadata["data"]["validation_cases"] == list(split.groups["validation"])
    assert not set(split.groups["test"]) & set(metadata["data"]["train_cases"])
    assert [step for step, _ in metadata["result"]["validation"]] == [5]


def test_finetune_from_csv_manifest_without_split(capsys, workspace, phantoms):
    manifest = workspace / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "image", "label"])
        for case in ("phantom_000", "phantom_003"):
            writer.writerow([f"c_{case[-3:]}", f"phantoms/imagesTr/{case}.nii.gz", f"phantoms/labelsTr/{case}.nii.gz"])
    out = workspace / "from_manifest.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", manifest, "--out", out, *TINY_TRAINING)
    assert code == 0, err
    records = events(stdout)
    assert named(records, "started")[0]["validation_volumes"] == 0
    assert any("no validation volumes" in r["message"] for r in named(records, "log"))
    metadata = json.loads(torch.load(out, weights_only=True)["metadata"])
    assert metadata["data"]["train_cases"] == ["c_000", "c_003"] and metadata["data"]["split"] is None
    assert metadata["labels"]["values"] == [0, 1, 2, 3]


def test_finetune_init_from_a_finetuned_checkpoint(capsys, workspace, phantoms, split_file, trained):
    source, _ = trained
    out = workspace / "refined.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", phantoms, "--split", split_file, "--init", source,
                                "--out", out, *TINY_TRAINING)
    assert code == 0, err
    initialised = [r["message"] for r in named(events(stdout), "log") if r["message"].startswith("initialised")]
    assert len(initialised) == 1 and initialised[0].endswith(f"from {source}")
    assert "encoder" in initialised[0] and "segmentation_head" in initialised[0]
    metadata = json.loads(torch.load(out, weights_only=True)["metadata"])
    assert [entry["path"] for entry in metadata["lineage"]] == [str(source)]
    assert metadata["lineage"][0]["stage"] == "finetune"


def test_finetune_init_reuses_the_checkpoints_preprocessing(capsys, workspace, phantoms, split_file, trained):
    """Without preprocessing options, a fine-tune from --init keeps the spacing and crop the weights were made at."""
    source, _ = trained
    out = workspace / "inherited.pt"
    training_only = list(TINY_TRAINING)
    for option in ("--crop-size", "--spacing"):
        index = training_only.index(option)
        del training_only[index:index + 2]
    code, _, err = run_cli(capsys, "finetune", "--labeled", phantoms, "--split", split_file, "--init", source,
                           "--out", out, *training_only)
    assert code == 0, err
    inherited = json.loads(torch.load(out, weights_only=True)["metadata"])["preprocessing"]
    original = json.loads(torch.load(source, weights_only=True)["metadata"])["preprocessing"]
    assert inherited == original and inherited["crop_size"] == 32 and inherited["target_spacing"] == 4.0


def test_a_test_case_never_gets_into_training(capsys, workspace, phantoms, split_file):
    split = load_split(split_file)
    test_case = split.groups["test"][0]
    with pytest.raises(ContrastSegError, match=test_case):
        check_not_test(split, [*split.groups["train_labeled"], test_case], stage="finetune")
    edited = json.loads(split_file.read_text())
    edited["groups"]["train_labeled"].append(test_case)
    leaking = workspace / "leaking_split.json"
    leaking.write_text(json.dumps(edited))
    out = workspace / "leak.pt"
    code, stdout, err = run_cli(capsys, "finetune", "--labeled", phantoms, "--split", leaking, "--out", out,
                                *TINY_TRAINING)
    assert_refused(code, stdout, err, test_case, leaking.name)
    assert not out.exists()


@pytest.fixture(scope="module")
def rotated_input(workspace, phantoms):
    """phantom_002 as NRRD with an oblique direction and an odd origin, to show predict keeps any geometry."""
    image = sitk.ReadImage(str(phantoms / "imagesTr" / "phantom_002.nii.gz"))
    c, s = np.cos(0.4), np.sin(0.4)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    image.SetOrigin((12.345, -67.89, 3.21))
    path = workspace / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("source, output_name", [("phantom", "single.nii.gz"), ("oblique", "single.nrrd")])
def test_predict_one_file_keeps_the_grid_with_companions(capsys, workspace, phantoms, trained, rotated_input,
                                                         source, output_name):
    model, _ = trained
    image_path = phantoms / "imagesTr" / "phantom_002.nii.gz" if source == "phantom" else rotated_input
    output = workspace / output_name
    code, stdout, err = run_cli(capsys, "predict", "--model", model, "--input", image_path, "--output", output,
                                "--probabilities", "--uncertainty", *FAST_PREDICT)
    assert code == 0, err
    assert named(events(stdout), "finished")[0]["outputs"] == [str(output)]
    reference = sitk.ReadImage(str(image_path))
    label = sitk.ReadImage(str(output))
    assert _grid(label) == _grid(reference)
    assert label.GetNumberOfComponentsPerPixel() == 1
    label_array = sitk.GetArrayFromImage(label)
    assert np.issubdtype(label_array.dtype, np.integer) and set(np.unique(label_array)) <= {0, 1, 2, 3}
    suffix = ".nii.gz" if output_name.endswith(".nii.gz") else ".nrrd"
    stem = output_name[: -len(suffix)]
    probabilities = sitk.ReadImage(str(workspace / f"{stem}_probabilities{suffix}"))
    uncertainty = sitk.ReadImage(str(workspace / f"{stem}_uncertainty{suffix}"))
    for companion in (probabilities, uncertainty):
        assert _grid(companion) == _grid(reference)
    assert probabilities.GetNumberOfComponentsPerPixel() == 4
    values = sitk.GetArrayFromImage(probabilities)
    assert values.shape[-1] == 4 and values.min() >= 0
    np.testing.assert_allclose(values.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(values.argmax(-1), label_array)
    entropy = sitk.GetArrayFromImage(uncertainty)
    assert uncertainty.GetNumberOfComponentsPerPixel() == 1
    assert entropy.min() >= 0.0 and entropy.max() <= 1.0 and entropy.max() > 0.0


@pytest.fixture(scope="module")
def prediction_folder(workspace, phantoms, trained):
    model, _ = trained
    output = workspace / "predictions"
    assert main(["predict", "--model", str(model), "--input", str(phantoms), "--output", str(output),
                 *FAST_PREDICT]) == 0
    return output


def test_predict_a_folder_into_an_output_folder(phantoms, prediction_folder):
    names = sorted(p.name for p in prediction_folder.iterdir())
    assert names == [f"phantom_00{i}_seg.nii.gz" for i in range(4)] + ["review.csv"]
    for index in range(4):
        image = sitk.ReadImage(str(phantoms / "imagesTr" / f"phantom_00{index}.nii.gz"))
        label = sitk.ReadImage(str(prediction_folder / f"phantom_00{index}_seg.nii.gz"))
        assert _grid(label) == _grid(image)
        assert label.GetPixelID() in (sitk.sitkUInt8, sitk.sitkUInt16)
    assert not [p for p in prediction_folder.parent.iterdir() if ".partial" in p.name]


def test_evaluate_writes_metrics_and_summary(capsys, workspace, phantoms, prediction_folder):
    out = workspace / "metrics.csv"
    code, stdout, err = run_cli(capsys, "evaluate", "--pred", prediction_folder, "--ref", phantoms, "--out", out)
    assert code == 0, err
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {"case", "structure", "dice", "hd95_mm"} <= set(rows[0])
    assert sorted({r["case"] for r in rows}) == [f"phantom_00{i}" for i in range(4)]
    assert len(rows) == 12 and sorted({r["structure"] for r in rows}) == sorted(STRUCTURES)
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    summary_path = workspace / "metrics_summary.csv"
    with summary_path.open(newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert [r["structure"] for r in summary] == [*STRUCTURES, "mean"]
    assert all(r["cases"] == "4" for r in summary)
    assert "LV" in stdout and "myocardium" in stdout and f"wrote {out}" in stdout
    before = out.read_bytes()
    code, stdout, err = run_cli(capsys, "evaluate", "--pred", prediction_folder, "--ref", phantoms, "--out", out)
    assert_refused(code, stdout, err, out.name, "--overwrite")
    assert out.read_bytes() == before


def test_info_describes_a_checkpoint(capsys, trained):
    source, _ = trained
    code, stdout, err = run_cli(capsys, "info", "--model", source)
    assert code == 0, err
    assert "stage         finetune" in stdout
    assert "0=background, 1=LV, 2=myocardium, 3=RV" in stdout
    assert "crop 32" in stdout and "spacing 4.0 mm" in stdout
    code, stdout, _ = run_cli(capsys, "info", "--model", source, "--json")
    assert code == 0 and json.loads(stdout)["labels"]["names"][1] == "LV"
