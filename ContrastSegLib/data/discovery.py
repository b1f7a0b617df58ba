"""Find the cases of a dataset from file names alone; no image is opened here.

Recognised layouts: ACDC patient folders, Medical Segmentation Decathlon folders (``dataset.json``), folders of
image/label pairs (``x.nii.gz`` + ``x_seg.nii.gz``, nnU-Net-like ``imagesTr``/``labelsTr``, DICOM series folders) and
CSV/JSON manifests. Hidden files, macOS ``._*`` junk included, are ignored.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

from ..errors import ContrastSegError
from ..io.dicom_series import is_dicom_folder
from ..io.read import case_stem, image_suffix
from ..io.read_checks import check_exists, list_folder
from .labels import clean_name

LAYOUTS = ("acdc", "msd", "pairs", "manifest")
LABEL_SUFFIXES = ("_seg", "_label", "_labels", "_gt", "_mask")
ACDC_FRAMES = ("ED", "ES", "both")
ACDC_LABEL_NAMES = {0: "background", 1: "RV", 2: "myocardium", 3: "LV"}
NO_IMAGES_HINT = "expected an ACDC, MSD (dataset.json), image/label pairs folder or a CSV/JSON manifest"

_ACDC_PATIENT = re.compile(r"patient\d+")
_ACDC_FRAME = re.compile(r"(patient\d+)_frame(\d+)")
_NNUNET_CHANNEL = re.compile(r"(.+)_(\d{4})")


@dataclass(frozen=True)
class Case:
    """One volume of a dataset; ``label`` None means unlabeled, ``channel`` picks a modality of a 4-D image."""

    id: str
    image: Path
    label: Path | None
    channel: int | None = None


@dataclass(frozen=True)
class Dataset:
    """The cases found under ``root`` (a folder, or the manifest file), sorted by id."""

    root: Path
    layout: str
    cases: tuple[Case, ...]
    label_names: dict[int, str] | None = None
    label_colors: dict[int, tuple[int, int, int]] | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(case.id for case in self.cases)

    @property
    def labeled(self) -> tuple[Case, ...]:
        return tuple(case for case in self.cases if case.label is not None)

    @property
    def unlabeled(self) -> tuple[Case, ...]:
        return tuple(case for case in self.cases if case.label is None)

    def subset(self, ids: Iterable[str]) -> "Dataset":
        """The dataset restricted to ``ids``, in the dataset's order."""
        wanted = {ids} if isinstance(ids, str) else set(ids)
        unknown = sorted(wanted - set(self.ids))
        if unknown:
            raise ContrastSegError(f"{self.root}: case id(s) {', '.join(unknown)} not in the dataset; "
                                   "check the ids or the split file")
        return replace(self, cases=tuple(case for case in self.cases if case.id in wanted))


def discover(path: str | os.PathLike, channel: int | None = None, acdc_frames: str = "ED") -> Dataset:
    """List the cases of the dataset at ``path`` (a folder or a .csv/.json manifest).

    ``channel`` selects the modality of 4-D images for every case (MSD default: 0 when several modalities);
    ``acdc_frames``: "ED", "ES" or "both" cardiac phases of ACDC patients.
    """
    root = Path(path).expanduser().absolute()
    frames = {name.lower(): name for name in ACDC_FRAMES}.get(str(acdc_frames).lower())
    if frames is None:
        raise ContrastSegError(f"acdc_frames {acdc_frames!r} is not valid; use one of {', '.join(ACDC_FRAMES)}")
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int) or channel < 0):
        raise ContrastSegError(f"{root}: channel must be a whole number ≥ 0, got {channel!r}; pass e.g. --channel 0")
    check_exists(root, "check the dataset path")
    if root.is_file():
        if root.name == "dataset.json":
            return _from_msd(root.parent, channel)
        if root.suffix.lower() not in (".csv", ".json"):
            raise ContrastSegError(f"{root}: not a dataset folder or a .csv/.json manifest; pass one of those")
        return _from_manifest(root, channel)
    if (root / "dataset.json").is_file():
        return _from_msd(root, channel)
    patients = _acdc_patient_folders(root)
    if patients:
        return _from_acdc(root, patients, frames, channel)
    return _build(root, "pairs", _folder_cases(root, channel))


def _build(root: Path, layout: str, cases: Iterable[Case], label_names=None, label_colors=None) -> Dataset:
    by_id: dict[str, Case] = {}
    for case in cases:
        if case.id in by_id:
            raise ContrastSegError(f"{root}: case id {case.id!r} is used twice ({by_id[case.id].image} and "
                                   f"{case.image}); rename or remove one of them, or give unique ids")
        by_id[case.id] = case
    if not by_id:
        raise ContrastSegError(f"{root}: holds no images; {NO_IMAGES_HINT}")
    return Dataset(root, layout, tuple(by_id[key] for key in sorted(by_id)), label_names, label_colors)


def _from_manifest(manifest: Path, channel: int | None) -> Dataset:
    names = colors = None
    if manifest.suffix.lower() == ".csv":
        rows: list[Any] = _read_csv(manifest)
    else:
        data = _read_json(manifest)
        if isinstance(data, dict) and isinstance(data.get("cases"), list):
            rows = data["cases"]
            names = _label_names(data.get("labels"), manifest, "labels")
            colors = _label_colors(data.get("colors"), manifest, "colors")
        elif isinstance(data, list):
            rows = data
        else:
            raise ContrastSegError(f"{manifest}: expected a list of cases or an object with a \"cases\" list; "
                                   "fix the manifest")
    cases = [_listed_case(row, manifest, f"case {number}", channel) for number, row in enumerate(rows, 1)]
    return _build(manifest, "manifest", cases, names, colors)


def _from_msd(root: Path, channel: int | None) -> Dataset:
    listing = root / "dataset.json"
    data = _read_json(listing)
    if not isinstance(data, dict):
        raise ContrastSegError(f"{listing}: expected a JSON object with \"training\" and \"labels\"; fix the file")
    names = _label_names(data.get("labels"), listing, "labels")
    colors = _label_colors(data.get("contrastseg_colors"), listing, "contrastseg_colors")
    if "training" not in data:  # nnU-Net v2 style: the files are found by their names
        return _build(root, "pairs", _folder_cases(root, channel), names, colors)
    modalities = data.get("modality") or {}
    if channel is None and isinstance(modalities, dict) and len(modalities) > 1:
        channel = 0
    training, test = data.get("training"), data.get("test") or []
    if not isinstance(training, list) or not isinstance(test, list):
        raise ContrastSegError(f"{listing}: \"training\" and \"test\" must be lists of cases; fix the file")
    entries = [(entry, f"training case {n}") for n, entry in enumerate(training, 1)]
    entries += [({"image": e} if isinstance(e, str) else e, f"test case {n}") for n, e in enumerate(test, 1)]
    cases = [_listed_case(entry, listing, where, channel) for entry, where in entries if not _is_junk(entry)]
    return _build(root, "msd", cases, names, colors)


def _is_junk(entry: Any) -> bool:
    image = entry.get("image") if isinstance(entry, dict) else None
    return isinstance(image, str) and Path(image).name.startswith("._")


def _listed_case(entry: Any, listing: Path, where: str, channel: int | None) -> Case:
    if not isinstance(entry, dict):
        raise ContrastSegError(f"{listing}: {where} is {json.dumps(entry)[:60]}, not an object; each case must be "
                               "an object with \"image\" and \"label\" paths, e.g. "
                               "{\"image\": \"a.nii.gz\", \"label\": \"a_seg.nii.gz\"}")
    if not isinstance(entry.get("image"), str) or not entry["image"].strip():
        raise ContrastSegError(f"{listing}: {where} has no \"image\" path; give every case an image file")
    if entry.get("label") is not None and not isinstance(entry["label"], str):
        raise ContrastSegError(f"{listing}: {where} has a \"label\" that is not a path; give a path or leave it out")
    fields = {key: str(value).strip() for key, value in entry.items() if value is not None}
    image = _listed_file(fields["image"], listing, where)
    label = _listed_file(fields["label"], listing, where) if fields.get("label") else None
    if channel is None and fields.get("channel"):
        if isinstance(entry["channel"], (bool, float)) or not fields["channel"].isdigit():
            raise ContrastSegError(f"{listing}: {where} channel must be a whole number ≥ 0, got "
                                   f"{entry['channel']!r}; fix the file")
        channel = int(fields["channel"])
    return Case(fields.get("id") or case_stem(image), image, label, channel)


def _listed_file(text: str, listing: Path, where: str) -> Path:
    path = listing.parent / Path(text).expanduser()  # an absolute path stays as it is
    if not path.exists():
        raise ContrastSegError(f"{listing}: {where} lists {text}, which does not exist ({path}); "
                               "fix the path or restore the file")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        problem = f"{error.msg} at line {error.lineno}, column {error.colno}"
        raise ContrastSegError(f"{path}: malformed JSON ({problem}); fix the file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ContrastSegError(f"{path}: cannot read it as UTF-8 text ({error}); check the file") from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [(name or "").strip().lower() for name in reader.fieldnames or []]
            if "image" not in columns:
                found = ", ".join(columns) or "none"
                raise ContrastSegError(f"{path}: malformed CSV, the header has no \"image\" column (found: {found}); "
                                       "make the first line name the columns, e.g. image,label,id")
            return [
                {key.strip().lower(): (value or "").strip() for key, value in row.items() if isinstance(key, str)}
                for row in reader
            ]
    except (csv.Error, OSError, UnicodeDecodeError) as error:
        raise ContrastSegError(f"{path}: malformed CSV ({error}); save it as UTF-8 comma-separated text") from None


def dataset_label_names(folder: str | os.PathLike) -> dict[int, str] | None:
    """The label names of ``folder/dataset.json`` (MSD or nnU-Net v2), None without one; no case is listed, so a
    folder holding only label maps (references) qualifies."""
    listing = Path(folder) / "dataset.json"
    if not listing.is_file():
        return None
    data = _read_json(listing)
    return _label_names(data.get("labels"), listing, "labels") if isinstance(data, dict) else None


def _label_names(value: Any, source: Path, key: str) -> dict[int, str] | None:
    """``{"0": "background"}`` (MSD) or ``{"background": 0}`` (nnU-Net v2) -> ``{0: "background"}``; background (0)
    is implied when left out, as in ``{"1": "LV"}``. Names are cleaned (``labels.clean_name``); a value given twice
    (``"1"`` and ``"01"``) is refused."""
    if value is None or value == {}:
        return None
    items = [(k, v, k) if type(v) is int else (k, k, v) for k, v in value.items()] if isinstance(value, dict) else [()]
    if not all(item and str(item[1]).strip().isdigit() and isinstance(item[2], str) for item in items):
        raise ContrastSegError(f"{source}: \"{key}\" must map label values to names, e.g. "
                               "{\"0\": \"background\", \"1\": \"tumour\"}; fix the file")
    names, keys = {0: "background"}, {}
    for where, label, name in items:
        number = int(label)
        if number in keys:
            raise ContrastSegError(f"{source}: \"{key}\" gives label value {number} twice ({json.dumps(keys[number])} "
                                   f"and {json.dumps(where)}); keep one of them")
        keys[number] = where
        names[number] = clean_name(name) or f"label_{number}"
    return dict(sorted(names.items()))


def _label_colors(value: Any, source: Path, key: str) -> dict[int, tuple[int, int, int]] | None:
    if value is None:
        return None
    items = list(value.items()) if isinstance(value, dict) else [(None, None)]
    if not all(str(label).strip().isdigit() and isinstance(rgb, list) and len(rgb) == 3
               and all(type(c) is int and 0 <= c <= 255 for c in rgb) for label, rgb in items):
        raise ContrastSegError(f"{source}: \"{key}\" must map label values to [R, G, B] in 0..255, e.g. "
                               "{\"1\": [255, 0, 0]}; fix the file")
    return dict(sorted((int(label), tuple(rgb)) for label, rgb in items))


def _entries(folder: Path) -> list[Path]:
    """Image files and DICOM series folders directly in ``folder``; hidden and ``._`` junk files skipped, a link
    named as an image that points nowhere refused."""
    children = [child for child in list_folder(folder) if not child.name.startswith(".")]
    for child in children:
        if image_suffix(child):
            check_exists(child)
    return [child for child in children
            if image_suffix(child) and child.is_file() or child.is_dir() and _is_dicom_folder(child)]


def _is_dicom_folder(folder: Path) -> bool:
    """A sub-folder of DICOM slices (``io.dicom_series.is_dicom_folder``); one that cannot be listed is not one."""
    try:
        return is_dicom_folder(folder)
    except ContrastSegError:
        return False


def _label_base(stem: str) -> str | None:
    lowered = stem.lower()
    suffix = next((s for s in LABEL_SUFFIXES if lowered.endswith(s) and len(stem) > len(s)), None)
    return stem[: -len(suffix)] if suffix else None


def _pair_cases(entries: list[Path], folder: Path, channel: int | None) -> list[Case]:
    """Pair each image with its ``<stem>_seg``/``_label``/``_labels``/``_gt``/``_mask`` file, if any."""
    by_stem: dict[str, list[Path]] = {}
    for entry in entries:
        by_stem.setdefault(case_stem(entry), []).append(entry)
    labels: dict[str, list[Path]] = {}
    for stem, paths in by_stem.items():
        base = _label_base(stem)
        if base is not None and base in by_stem:
            labels.setdefault(base, []).extend(paths)
        elif base is not None:
            raise ContrastSegError(f"{folder / paths[0].name}: label file without an image {base}<suffix> beside it;"
                                   " add the image, or rename the file if it is an image")
    cases = []
    for stem, paths in by_stem.items():
        if _label_base(stem) is not None:
            continue
        if len(paths) > 1:
            raise ContrastSegError(f"{folder}: {paths[0].name} and {paths[1].name} are both case {stem!r}; "
                                   "keep one of them")
        found = labels.get(stem, [])
        if len(found) > 1:
            raise ContrastSegError(f"{folder / paths[0].name}: several label files "
                                   f"({', '.join(p.name for p in found)}); keep one of them")
        cases.append(Case(stem, paths[0], found[0] if found else None, channel))
    return cases


def _folder_cases(root: Path, channel: int | None) -> list[Case]:
    """Pairs directly in ``root`` plus nnU-Net-like ``imagesTr``/``labelsTr``/``imagesTs`` folders."""
    cases = _pair_cases(_entries(root), root, channel)
    if not (root / "imagesTr").is_dir() and not (root / "imagesTs").is_dir():
        return cases
    labels_folder = root / "labelsTr"
    labels = {case_stem(p): p for p in _entries(labels_folder)} if labels_folder.is_dir() else {}
    for name in ("imagesTr", "imagesTs"):
        if (root / name).is_dir():
            for stem, (image, image_channel) in _nnunet_images(root / name, channel).items():
                label = labels.pop(stem, None) if name == "imagesTr" else None
                cases.append(Case(stem, image, label, image_channel))
    if labels:
        orphan = labels[sorted(labels)[0]]
        raise ContrastSegError(f"{orphan}: label without an image in {root / 'imagesTr'}; add the image or "
                               "remove the label")
    return cases


def _nnunet_images(folder: Path, channel: int | None) -> dict[str, tuple[Path, int | None]]:
    """Case id -> (image, channel); with ``x_0000``-style names the file of ``channel`` (default 0) is the image."""
    entries = _entries(folder)
    matches = [_NNUNET_CHANNEL.fullmatch(case_stem(entry)) for entry in entries]
    if not (entries and all(matches) and any(m.group(2) == "0000" for m in matches)):
        return {case_stem(entry): (entry, channel) for entry in entries}
    wanted = channel or 0
    images = {m.group(1): (entry, None) for m, entry in zip(matches, entries) if int(m.group(2)) == wanted}
    missing = sorted({m.group(1) for m in matches} - set(images))
    if missing:
        raise ContrastSegError(f"{folder}: case {missing[0]} has no file for channel {wanted} "
                               f"({missing[0]}_{wanted:04d}); add it or choose another channel")
    return images


def _is_acdc_patient(folder: Path) -> bool:
    if not _ACDC_PATIENT.fullmatch(folder.name) or not folder.is_dir():
        return False
    return any(_ACDC_FRAME.fullmatch(case_stem(child)) and image_suffix(child) for child in list_folder(folder))


def _acdc_patient_folders(root: Path) -> list[Path]:
    if _is_acdc_patient(root):
        return [root]
    parents = [root] + [root / name for name in ("training", "testing") if (root / name).is_dir()]
    return [child for parent in parents for child in list_folder(parent) if _is_acdc_patient(child)]


def _from_acdc(root: Path, patients: list[Path], frames: str, channel: int | None) -> Dataset:
    cases = []
    for folder in patients:
        by_frame = {
            int(match.group(2)): case
            for case in _pair_cases(_entries(folder), folder, channel)
            if (match := _ACDC_FRAME.fullmatch(case.id))
        }
        for phase, number in _acdc_wanted_frames(folder, frames, sorted(by_frame)):
            if number not in by_frame:
                raise ContrastSegError(f"{folder / 'Info.cfg'}: {phase} is frame {number}, but "
                                       f"{folder.name}_frame{number:02d}.nii.gz is missing; restore it or fix Info.cfg")
            cases.append(by_frame[number])
    return _build(root, "acdc", cases, dict(ACDC_LABEL_NAMES))


def _acdc_wanted_frames(folder: Path, frames: str, present: list[int]) -> list[tuple[str, int]]:
    info = folder / "Info.cfg"
    if not info.is_file():
        if frames == "both":
            return [("frame", number) for number in present]
        raise ContrastSegError(f"{info}: missing; restore ACDC's Info.cfg (it names the ED and ES frames) "
                               "or pass acdc_frames='both'")
    lines = (line.partition(":") for line in info.read_text(encoding="utf-8", errors="replace").splitlines())
    fields = {key.strip().upper(): value.strip() for key, _, value in lines}
    wanted: dict[int, str] = {}
    for phase in ("ED", "ES") if frames == "both" else (frames,):
        if not fields.get(phase, "").isdigit():
            raise ContrastSegError(f"{info}: no valid \"{phase}: <frame>\" line; restore ACDC's Info.cfg")
        wanted.setdefault(int(fields[phase]), phase)
    return [(phase, number) for number, phase in wanted.items()]
