"""The catalog entries for the Slicer Extensions Index (``ExtensionsIndex/main``, ``ExtensionsIndex/5.8``) and the
extension's metadata, checked as the index checks a submission without the network: the JSON schema (the vendored
copy of Slicer's ``Schemas/slicer-extension-catalog-entry-schema-v1.0.1.json``, Slicer/Slicer cf2a70e), and the
offline parts of the index's ``scripts/check_description_files.py`` (Slicer/ExtensionsIndex 07f1d1b: line 111 LF only,
182 scm_url scheme, 195 name, 222 repository name, 402/424/440 how it reads ``project()``, the icon and the
screenshots from CMakeLists.txt, 466 repository size)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
INDEX = ROOT / "ExtensionsIndex"
SCHEMA = INDEX / "slicer-extension-catalog-entry-schema-v1.0.1.json"
BRANCHES = {"main": "main", "5.8": "5.8"}  # index branch -> the extension's branch it builds
RAW = "https://raw.githubusercontent.com/contrastseg/SlicerContrastSeg/main/"


def cmake_value(name: str) -> str:
    """``set(NAME "value")`` of the top-level CMakeLists.txt, read the way the index's script reads it."""
    found = re.findall(rf'set\s*\({name}\s*"([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert len(found) == 1, name
    return found[0]


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_catalog_entry_validates_against_the_schema(branch):
    jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema")
    path = INDEX / branch / "ContrastSeg.json"
    assert b"\r" not in path.read_bytes()
    entry, schema = json.loads(path.read_text(encoding="utf-8")), json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(entry, schema)
    assert entry["$schema"] == schema["$id"]
    with pytest.raises(jsonschema.ValidationError):  # the vendored schema does refuse a bad entry
        jsonschema.validate({**entry, "tier": 6}, schema)


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_catalog_entry_matches_the_extension(branch):
    entry = json.loads((INDEX / branch / "ContrastSeg.json").read_text(encoding="utf-8"))
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    name = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake, re.I)[0]
    assert name == "ContrastSeg" and not name.lower().startswith("slicer")  # the file name is the extension name
    assert entry["build_dependencies"] == cmake_value("EXTENSION_DEPENDS").split()
    assert entry["category"] == cmake_value("EXTENSION_CATEGORY") == "Segmentation"
    url = urlsplit(entry["scm_url"])
    assert url.scheme == "https" and Path(url.path).stem.startswith("Slicer")
    assert entry["scm_revision"] == BRANCHES[branch] and entry["build_subdirectory"] == "."
    assert cmake_value("EXTENSION_HOMEPAGE").rstrip("/") == entry["scm_url"].removesuffix(".git")


def test_extension_metadata_as_reviewers_expect():
    description = cmake_value("EXTENSION_DESCRIPTION")
    assert len(re.findall(r"[.!?](\s|$)", description)) <= 2 and "PyTorch" in description
    assert cmake_value("EXTENSION_CONTRIBUTORS")
    icon = cmake_value("EXTENSION_ICONURL")
    screenshots = cmake_value("EXTENSION_SCREENSHOTURLS").split()
    assert screenshots and all(url.startswith(RAW) for url in [icon, *screenshots])
    for url in [icon, *screenshots]:
        assert (ROOT / url[len(RAW):]).read_bytes()[:4] == b"\x89PNG", url
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("BSD 3-Clause")


def test_harness_screenshots_stay_captioned_as_such_on_the_homepage():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for url in cmake_value("EXTENSION_SCREENSHOTURLS").split():
        picture = url[len(RAW):]
        assert f"]({picture})" in readme, f"{picture} is not shown on the homepage"
        caption = " ".join(readme[readme.index(f"]({picture})"):][:1500].split())
        assert "rendered with Qt outside Slicer by the test harness" in caption, picture


def test_repository_is_under_the_index_size_limit():
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [ROOT / p for p in files.decode().split("\0") if p]
    assert sum(p.stat().st_size for p in paths if p.is_file()) < 100 * 2**20
