"""Installing the packages from the module file itself, in the harness, on a Slicer that lacks them (issue 19):
one question with the whole download, then PyTorchUtils told not to ask again (defect 12); Slicer's testing mode
installs nothing and the factory self-test skips its jobs with a message (defect 11). In testing mode Slicer shows
no dialog: ``confirmOkCancelDisplay`` returns ``True == QMessageBox.Ok`` (util.py v5.8.1 lines 3002-3004, so the old
module refused with an error) and PyTorchUtils installs without asking (line 207). PyTorchUtils and the missing
packages: ``fresh_slicer.py``."""

from __future__ import annotations

import pytest

pytest.importorskip("PyQt5", reason="PyQt5 is not installed (pip install -e .[slicer])")

from fresh_slicer import FreshSlicer  # noqa: E402
from slicer_app import qt, user  # noqa: E402
from slicer_scene import slicer  # noqa: E402
from test_slicer_gui import session  # noqa: E402,F401  (the fixture: the module loaded, a user answering dialogs)

from ContrastSegLogic import SceneInputError  # noqa: E402


def test_one_question_with_the_whole_download_then_pytorch_installs_without_its_own(session, monkeypatch):
    fresh = FreshSlicer(monkeypatch)
    assert user(session.widget.logic.ensure_dependencies) == ["monai>=1.3", "tqdm>=4.60"]
    assert len(session.dialogs.seen) == 1, session.dialogs.seen  # not a second one from PyTorchUtils.py line 208
    question = session.dialogs.seen[0]
    assert "torch>=2.2 and torchvision" in question and "CPU build, about 200 MB" in question
    assert "about 203 MB in all" in question  # torch 200 + monai 2.7 + tqdm 0.1
    assert fresh.torch_installs == [False] and len(fresh.pip_installs) == 1


def test_declining_the_one_question_installs_nothing(session, monkeypatch):
    fresh = FreshSlicer(monkeypatch)
    session.dialogs.answers.append(qt.QMessageBox.Cancel)
    with pytest.raises(SceneInputError, match="accept the installation"):
        user(session.widget.logic.ensure_dependencies)
    assert len(session.dialogs.seen) == 1 and fresh.torch_installs == [] and fresh.pip_installs == []


def test_testing_mode_installs_nothing_and_the_self_test_says_what_it_skipped(session, monkeypatch):
    fresh = FreshSlicer(monkeypatch, testing=True, forbid=True)
    shown = []
    monkeypatch.setattr(slicer.util, "delayDisplay", lambda text, *args, **kwargs: shown.append(text))
    slicer.selfTests["ContrastSeg"]()  # as ctest runs it: Slicer --testing (every question answered OK)
    assert shown and "skipped" in shown[-1] and "torch>=2.2, monai>=1.3, tqdm>=4.60" in shown[-1], shown
    with pytest.raises(SceneInputError, match="CONTRASTSEG_INSTALL_PACKAGES=1"):
        session.widget.logic.ensure_dependencies()  # a job in testing mode: refused, not installed
    assert fresh.torch_installs == [] and fresh.pip_installs == [] and session.dialogs.seen == []
