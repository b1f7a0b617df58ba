"""Dataset discovery from file names: every layout, the channel and frame options, and every error."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ContrastSegLib.data.discovery import ACDC_LABEL_NAMES, Case, Dataset, discover
from ContrastSegLib.errors import ContrastSegError
from ContrastSegLib.io.read import FILE_SUFFIXES, read_image


def touch(path: Path, text: str = "") -> Path:
    """An empty stand-in file: discovery never opens images."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_acdc_patient(parent: Path, number: int, ed: int, es: int, labeled: bool = True) -> Path:
    folder = parent / f"patient{number:03d}"
    touch(folder / "Info.cfg", f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 180.0\nNbFrame: 30\nWeight: 80.0\n")
    touch(folder / f"patient{number:03d}_4d.nii.gz")
    for frame in (ed, es):
        touch(folder / f"patient{number:03d}_frame{frame:02d}.nii.gz")
        if labeled:
            touch(folder / f"patient{number:03d}_frame{frame:02d}_gt.nii.gz")
    return folder


def make_msd(root: Path, modalities: dict) -> Path:
    for name in ("prostate_00", "prostate_01"):
        touch(root / "imagesTr" / f"{name}.nii.gz")
        touch(root / "labelsTr" / f"{name}.nii.gz")
    touch(root / "imagesTs" / "prostate_03.nii.gz")
    for junk in ("imagesTr/._prostate_00.nii.gz", "labelsTr/._prostate_00.nii.gz", "imagesTs/._prostate_03.nii.gz"):
        touch(root / junk)
    description = {
        "name": "PROSTATE",
        "modality": modalities,
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "contrastseg_colors": {"1": [255, 0, 0], "2": [0, 128, 255]},
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"}
                     for n in ("prostate_00", "prostate_01")],
        "test": ["./imagesTs/prostate_03.nii.gz"],
    }
    touch(root / "dataset.json", json.dumps(description))
    return root


def test_acdc_picks_the_end_diastole_frame_from_info_cfg(tmp_path):
    make_acdc_patient(tmp_path, 1, ed=1, es=12)
    make_acdc_patient(tmp_path, 2, ed=4, es=15)  # ED is not the first frame here
    dataset = discover(tmp_path)
    assert dataset.layout == "acdc"
    assert dataset.ids == ("patient001_frame01", "patient002_frame04")
    case = dataset.cases[1]
    assert case.image == tmp_path / "patient002" / "patient002_frame04.nii.gz"
    assert case.label == tmp_path / "patient002" / "patient002_frame04_gt.nii.gz"
    assert dataset.label_names == {0: "background", 1: "RV", 2: "myocardium", 3: "LV"} == ACDC_LABEL_NAMES


def test_acdc_end_systole_and_both_frames(tmp_path):
    make_acdc_patient(tmp_path, 1, ed=1, es=12)
    assert discover(tmp_path, acdc_frames="ES").ids == ("patient001_frame12",)
    assert discover(tmp_path, acdc_frames="both").ids == ("patient001_frame01", "patient001_frame12")


def test_acdc_training_and_testing_folders(tmp_path):
    make_acdc_patient(tmp_path / "training", 1, ed=1, es=10)
    make_acdc_patient(tmp_path / "testing", 101, ed=1, es=14, labeled=False)
    dataset = discover(tmp_path)
    assert dataset.ids == ("patient001_frame01", "patient101_frame01")
    assert [case.id for case in dataset.labeled] == ["patient001_frame01"]
    assert [case.id for case in dataset.unlabeled] == ["patient101_frame01"]


def test_acdc_single_patient_folder(tmp_path):
    folder = make_acdc_patient(tmp_path, 7, ed=1, es=9)
    assert discover(folder).ids == ("patient007_frame01",)


def test_acdc_missing_info_cfg_is_an_error_unless_both_frames(tmp_path):
    folder = make_acdc_patient(tmp_path, 1, ed=1, es=12)
    (folder / "Info.cfg").unlink()
    with pytest.raises(ContrastSegError, match=r"Info\.cfg.*acdc_frames='both'"):
        discover(tmp_path)
    assert discover(tmp_path, acdc_frames="both").ids == ("patient001_frame01", "patient001_frame12")


def test_acdc_frame_named_in_info_cfg_but_missing(tmp_path):
    folder = make_acdc_patient(tmp_path, 1, ed=1, es=12)
    (folder / "Info.cfg").write_text("ED: 2\nES: 12\n")
    with pytest.raises(ContrastSegError, match=r"Info\.cfg: ED is frame 2.*patient001_frame02"):
        discover(tmp_path)


def test_invalid_acdc_frames_option(tmp_path):
    make_acdc_patient(tmp_path, 1, ed=1, es=12)
    with pytest.raises(ContrastSegError, match="acdc_frames 'systole'"):
        discover(tmp_path, acdc_frames="systole")


def test_msd_multimodal_defaults_to_first_channel_and_ignores_junk(tmp_path):
    dataset = discover(make_msd(tmp_path, {"0": "T2", "1": "ADC"}))
    assert dataset.layout == "msd"
    assert dataset.ids == ("prostate_00", "prostate_01", "prostate_03")
    assert [case.channel for case in dataset.cases] == [0, 0, 0]
    assert [case.id for case in dataset.unlabeled] == ["prostate_03"]
    assert dataset.cases[0].image == tmp_path / "imagesTr" / "prostate_00.nii.gz"
    assert dataset.cases[0].label == tmp_path / "labelsTr" / "prostate_00.nii.gz"
    assert dataset.label_names == {0: "background", 1: "PZ", 2: "TZ"}
    assert dataset.label_colors == {1: (255, 0, 0), 2: (0, 128, 255)}


def test_msd_explicit_channel_wins_and_single_modality_has_none(tmp_path):
    assert {c.channel for c in discover(make_msd(tmp_path / "a", {"0": "T2", "1": "ADC"}), channel=1).cases} == {1}
    assert {c.channel for c in discover(make_msd(tmp_path / "b", {"0": "CT"})).cases} == {None}
    assert discover(tmp_path / "b" / "dataset.json").root == tmp_path / "b"


def test_msd_channel_reads_a_real_4d_image(tmp_path):
    root = make_msd(tmp_path, {"0": "T2", "1": "ADC"})
    volume = np.stack([np.full((3, 4, 4), 10.0), np.full((3, 4, 4), 20.0)]).astype(np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(volume, isVector=False), str(root / "imagesTr" / "prostate_00.nii.gz"))
    case = discover(root).cases[0]
    assert read_image(case.image, case.channel).array.mean() == pytest.approx(10.0)


def test_msd_listed_file_missing_names_dataset_json_and_file(tmp_path):
    root = make_msd(tmp_path, {"0": "T2"})
    (root / "labelsTr" / "prostate_01.nii.gz").unlink()
    with pytest.raises(ContrastSegError, match=r"dataset\.json: training case 2 lists \./labelsTr/prostate_01"):
        discover(root)


def test_msd_malformed_dataset_json(tmp_path):
    touch(tmp_path / "dataset.json", '{"training": [}')
    with pytest.raises(ContrastSegError, match=r"dataset\.json: malformed JSON .*line 1"):
        discover(tmp_path)


@pytest.mark.parametrize("image_suffix", FILE_SUFFIXES)
@pytest.mark.parametrize("label_suffix", ["_seg", "_label", "_labels", "_gt", "_mask"])
def test_pairs_every_label_suffix_and_file_suffix(tmp_path, image_suffix, label_suffix):
    touch(tmp_path / f"case_1{image_suffix}")
    touch(tmp_path / f"case_1{label_suffix}.nrrd")
    touch(tmp_path / f"case_2{image_suffix}")
    dataset = discover(tmp_path)
    assert dataset.layout == "pairs"
    assert dataset.cases == (
        Case("case_1", tmp_path / f"case_1{image_suffix}", tmp_path / f"case_1{label_suffix}.nrrd"),
        Case("case_2", tmp_path / f"case_2{image_suffix}", None),
    )


def test_pairs_ignore_hidden_and_macos_junk_files(tmp_path):
    touch(tmp_path / "case_1.nii.gz")
    touch(tmp_path / "._case_1.nii.gz")
    touch(tmp_path / "._case_1_seg.nii.gz")
    touch(tmp_path / "notes.txt")
    assert discover(tmp_path).cases == (Case("case_1", tmp_path / "case_1.nii.gz", None),)


def test_pairs_explicit_channel_applies_to_every_case(tmp_path):
    touch(tmp_path / "case_1.nii.gz")
    assert discover(tmp_path, channel=2).cases[0].channel == 2


def test_nnunet_folders_without_dataset_json(tmp_path):
    for name in ("a", "b"):
        touch(tmp_path / "imagesTr" / f"{name}_0000.nii.gz")
        touch(tmp_path / "imagesTr" / f"{name}_0001.nii.gz")
    touch(tmp_path / "labelsTr" / "a.nii.gz")
    touch(tmp_path / "labelsTr" / "._a.nii.gz")
    touch(tmp_path / "imagesTs" / "c_0000.nii.gz")
    touch(tmp_path / "imagesTs" / "c_0001.nii.gz")
    dataset = discover(tmp_path)
    assert dataset.cases == (
        Case("a", tmp_path / "imagesTr" / "a_0000.nii.gz", tmp_path / "labelsTr" / "a.nii.gz"),
        Case("b", tmp_path / "imagesTr" / "b_0000.nii.gz", None),
        Case("c", tmp_path / "imagesTs" / "c_0000.nii.gz", None),
    )
    assert discover(tmp_path, channel=1).cases[0].image == tmp_path / "imagesTr" / "a_0001.nii.gz"


def test_nnunet_folders_with_plain_image_names(tmp_path):
    touch(tmp_path / "imagesTr" / "liver_1.nii.gz")
    touch(tmp_path / "labelsTr" / "liver_1.nii.gz")
    touch(tmp_path / "imagesTs" / "liver_9.nii.gz")
    dataset = discover(tmp_path)
    assert dataset.cases == (
        Case("liver_1", tmp_path / "imagesTr" / "liver_1.nii.gz", tmp_path / "labelsTr" / "liver_1.nii.gz"),
        Case("liver_9", tmp_path / "imagesTs" / "liver_9.nii.gz", None),
    )


def test_nnunet_v2_dataset_json_without_case_list(tmp_path):
    touch(tmp_path / "imagesTr" / "la_003_0000.nii.gz")
    touch(tmp_path / "labelsTr" / "la_003.nii.gz")
    touch(tmp_path / "dataset.json", json.dumps({"channel_names": {"0": "MRI"}, "labels": {"background": 0, "LA": 1},
                                                  "numTraining": 1, "file_ending": ".nii.gz"}))
    dataset = discover(tmp_path)
    assert dataset.ids == ("la_003",) and len(dataset.labeled) == 1
    assert dataset.label_names == {0: "background", 1: "LA"}


def test_nnunet_label_without_image_is_an_error(tmp_path):
    touch(tmp_path / "imagesTr" / "a.nii.gz")
    touch(tmp_path / "labelsTr" / "b.nii.gz")
    with pytest.raises(ContrastSegError, match=r"labelsTr/b\.nii\.gz: label without an image in .*imagesTr"):
        discover(tmp_path)


def test_dicom_subfolders_are_cases(tmp_path):
    for series in ("series_a", "series_b"):
        touch(tmp_path / series / "slice_0001.dcm")
        touch(tmp_path / series / "slice_0002.dcm")
    touch(tmp_path / "series_b_seg.nii.gz")
    touch(tmp_path / "not_dicom" / "readme.txt")
    dataset = discover(tmp_path)
    assert dataset.cases == (
        Case("series_a", tmp_path / "series_a", None),
        Case("series_b", tmp_path / "series_b", tmp_path / "series_b_seg.nii.gz"),
    )


def test_pairs_label_without_image_is_an_error(tmp_path):
    touch(tmp_path / "case_1.nii.gz")
    touch(tmp_path / "case_2_mask.nii.gz")
    with pytest.raises(ContrastSegError, match=r"case_2_mask\.nii\.gz: label file without an image"):
        discover(tmp_path)


def test_pairs_two_label_files_for_one_image_is_an_error(tmp_path):
    touch(tmp_path / "case_1.nii.gz")
    touch(tmp_path / "case_1_seg.nii.gz")
    touch(tmp_path / "case_1_gt.nii.gz")
    with pytest.raises(ContrastSegError, match="several label files"):
        discover(tmp_path)


def test_pairs_same_case_in_two_formats_is_an_error(tmp_path):
    touch(tmp_path / "case_1.nii.gz")
    touch(tmp_path / "case_1.nrrd")
    with pytest.raises(ContrastSegError, match=r"are both case 'case_1'"):
        discover(tmp_path)


def test_csv_manifest_with_relative_paths(tmp_path):
    touch(tmp_path / "data" / "scan_a.nii.gz")
    touch(tmp_path / "data" / "scan_a_labels.nii.gz")
    touch(tmp_path / "data" / "scan_b.nrrd")
    rows = "../data/scan_a.nii.gz,../data/scan_a_labels.nii.gz,first\n../data/scan_b.nrrd,,\n"
    manifest = touch(tmp_path / "lists" / "cases.csv", "image,label,id\n" + rows)
    dataset = discover(manifest)
    assert dataset.layout == "manifest" and dataset.root == manifest
    data = tmp_path / "lists" / ".." / "data"
    assert dataset.cases == (
        Case("first", data / "scan_a.nii.gz", data / "scan_a_labels.nii.gz"),
        Case("scan_b", data / "scan_b.nrrd", None),
    )
    assert dataset.label_names is None


def test_json_manifest_list_and_object_forms(tmp_path):
    touch(tmp_path / "img" / "x.mha")
    touch(tmp_path / "seg" / "x.mha")
    touch(tmp_path / "img" / "y.mha")
    cases = [{"image": "img/x.mha", "label": "seg/x.mha"}, {"image": str(tmp_path / "img" / "y.mha"), "id": "why"}]
    listed = discover(touch(tmp_path / "list.json", json.dumps(cases)))
    assert listed.cases == (Case("why", tmp_path / "img" / "y.mha", None),
                            Case("x", tmp_path / "img" / "x.mha", tmp_path / "seg" / "x.mha"))
    document = {"cases": cases, "labels": {"0": "background", "1": "liver"}, "colors": {"1": [10, 20, 30]}}
    described = discover(touch(tmp_path / "described.json", json.dumps(document)))
    assert described.cases == listed.cases
    assert described.label_names == {0: "background", 1: "liver"}
    assert described.label_colors == {1: (10, 20, 30)}


def test_manifest_channel_column_and_explicit_channel(tmp_path):
    touch(tmp_path / "a.nii.gz")
    touch(tmp_path / "b.nii.gz")
    manifest = touch(tmp_path / "cases.csv", "image,channel\na.nii.gz,0\nb.nii.gz,1\n")
    assert [case.channel for case in discover(manifest).cases] == [0, 1]
    assert [case.channel for case in discover(manifest, channel=2).cases] == [2, 2]
    with pytest.raises(ContrastSegError, match=r"case 1 channel must be a whole number ≥ 0, got 'T2'"):
        discover(touch(tmp_path / "bad.csv", "image,channel\na.nii.gz,T2\n"))
    with pytest.raises(ContrastSegError, match="channel must be a whole number ≥ 0, got -1"):
        discover(manifest, channel=-1)


def test_manifest_listed_file_missing_names_manifest_and_file(tmp_path):
    manifest = touch(tmp_path / "cases.json", json.dumps([{"image": "gone.nii.gz"}]))
    with pytest.raises(ContrastSegError, match=r"cases\.json: case 1 lists gone\.nii\.gz, which does not exist"):
        discover(manifest)


def test_manifest_duplicate_ids(tmp_path):
    touch(tmp_path / "a" / "scan.nii.gz")
    touch(tmp_path / "b" / "scan.nii.gz")
    manifest = touch(tmp_path / "cases.csv", "image\na/scan.nii.gz\nb/scan.nii.gz\n")
    with pytest.raises(ContrastSegError, match=r"case id 'scan' is used twice"):
        discover(manifest)


def test_csv_manifest_without_image_column(tmp_path):
    manifest = touch(tmp_path / "cases.csv", "path,label\nx.nii.gz,\n")
    with pytest.raises(ContrastSegError, match=r"cases\.csv: malformed CSV, the header has no \"image\" column"):
        discover(manifest)


@pytest.mark.parametrize("content, problem", [
    ("[{\"image\": ", "malformed JSON"),
    ("{\"items\": []}", "expected a list of cases"),
    ("[{\"label\": \"x.nii.gz\"}]", "case 1 has no \"image\" path"),
    ("{\"cases\": [], \"colors\": {\"1\": [300, 0, 0]}}", "\"colors\" must map label values"),
])
def test_malformed_json_manifest(tmp_path, content, problem):
    with pytest.raises(ContrastSegError, match=problem):
        discover(touch(tmp_path / "cases.json", content))


def test_missing_path(tmp_path):
    with pytest.raises(ContrastSegError, match=r"nowhere: no such file or folder"):
        discover(tmp_path / "nowhere")


def test_folder_without_images(tmp_path):
    touch(tmp_path / "readme.txt")
    with pytest.raises(ContrastSegError, match=r"holds no images; expected an ACDC, MSD \(dataset\.json\)"):
        discover(tmp_path)


def test_a_single_image_file_is_not_a_dataset(tmp_path):
    with pytest.raises(ContrastSegError, match="not a dataset folder or a .csv/.json manifest"):
        discover(touch(tmp_path / "scan.nii.gz"))


def test_dataset_views_and_subset(tmp_path):
    cases = tuple(Case(name, tmp_path / f"{name}.nii.gz", label) for name, label in
                  [("a", tmp_path / "a_seg.nii.gz"), ("b", None), ("c", tmp_path / "c_seg.nii.gz")])
    dataset = Dataset(tmp_path, "pairs", cases)
    assert [case.id for case in dataset.labeled] == ["a", "c"]
    assert [case.id for case in dataset.unlabeled] == ["b"]
    assert dataset.subset(["c", "a"]).ids == ("a", "c")
    assert dataset.subset([]).cases == ()
    with pytest.raises(ContrastSegError, match="case id.* z not in the dataset"):
        dataset.subset(["a", "z"])
