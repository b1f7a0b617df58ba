"""Checkpoints: tensors plus JSON metadata in one ``.pt`` file, safe to load and written atomically.

The file is a dict ``{"format": "contrastseg-checkpoint", "format_version": 1, "metadata": <JSON string>,
"model": state_dict, "optimizer": optional state_dict, "rng": optional tensors}`` and is read with
``torch.load(weights_only=True)``: a file holding code (a pickled object) is refused, never executed.

Metadata keys: ``architecture`` (UNetConfig), ``labels`` (values, names, colours), ``preprocessing``
(PreprocessConfig), ``stage``, ``config`` (the stage's dataclass), ``lineage`` (list of earlier stages),
``step``, ``stopped`` (step, planned, signal; only in a run that a stop request ended early), ``library_version``,
``created``.

:func:`read_metadata` reads the metadata without torch (the Slicer module describes a model before torch is
installed): from the archive's ``data.pkl`` through an unpickler that imports and calls nothing the file names.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import ContrastSegError
from ..io.output_path import atomic_path, write_errors
from ..io.read import image_suffix
from ..io.write_file import write_staged_bytes
from .stop import shielded

if TYPE_CHECKING:
    import torch

FORMAT = "contrastseg-checkpoint"
FORMAT_VERSION = 1
MAX_PICKLE_BYTES = 64 * 1024 ** 2  # data.pkl holds the structure only (tensors are records of their own)


def __getattr__(name: str):
    """``checkpoint.torch``: torch, imported on first use (:func:`read_metadata` needs none)."""
    if name == "torch":
        import torch
        return torch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Checkpoint:
    """model: state dict; metadata: JSON-able dict; optimizer/extra: optional state for resuming."""

    model: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    optimizer: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write ``checkpoint`` atomically (serialised in memory, then a size-checked temporary file + rename, shielded
    from stop signals); metadata gets version and time stamps. A failed write leaves ``path`` as it was."""
    import torch
    metadata = dict(checkpoint.metadata)
    metadata.setdefault("library_version", __version__)
    metadata["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": json.dumps(metadata, sort_keys=True),
        "model": {k: v.detach().cpu() for k, v in checkpoint.model.items()},
    }
    if checkpoint.optimizer is not None:
        payload["optimizer"] = checkpoint.optimizer
    if checkpoint.extra:
        payload["extra"] = checkpoint.extra
    buffer = io.BytesIO()
    with shielded():
        with write_errors(path):
            torch.save(payload, buffer)
        with atomic_path(path, overwrite=overwrite, kind="file") as temporary:
            write_staged_bytes(buffer.getvalue(), temporary, Path(path))
    return Path(path)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is refused with a one-line error."""
    import torch

    from .checkpoint_checks import check_checkpoint
    path = Path(path)
    _check_torch_file(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ContrastSegError(
            f"{path}: refused to load — the file holds Python objects, not only tensors ({_short(error)}); "
            "use a checkpoint written by contrastseg"
        ) from None
    # KeyError/IndexError: the unpickler meeting bytes that are no pickle at all (e.g. a text file starting "h")
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError) as error:
        raise ContrastSegError(
            f"{path}: not a readable checkpoint (truncated or corrupt: {_short(error)}); train it again or copy "
            "the complete file"
        ) from None
    metadata = _checked_metadata(path, payload)
    try:
        model = dict(payload["model"])
    except (KeyError, TypeError, ValueError) as error:
        raise ContrastSegError(f"{path}: checkpoint metadata is damaged ({_short(error)}); train it again") from None
    check_checkpoint(path, metadata, model)
    return Checkpoint(model, metadata, payload.get("optimizer"), payload.get("extra", {}))


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint written by :func:`save_checkpoint`, read without torch and without running
    anything the file names (its weights are neither read nor checked: :func:`load_checkpoint` does that)."""
    path = Path(path)
    _check_torch_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            # torch.save writes "<archive>/data.pkl" (torch/serialization.py, _save: write_record("data.pkl", ...))
            names = [info for info in archive.infolist() if info.filename.endswith("/data.pkl")
                     and info.filename.count("/") == 1]
            if len(names) != 1 or names[0].file_size > MAX_PICKLE_BYTES:
                raise ContrastSegError(f"{path}: not a ContrastSeg checkpoint; pass a .pt file written by contrastseg")
            payload = _InertUnpickler(io.BytesIO(archive.read(names[0]))).load()
    except ContrastSegError:
        raise
    except zipfile.BadZipFile as error:  # also a file in torch's legacy format, which save_checkpoint never writes
        raise ContrastSegError(f"{path}: not a readable checkpoint (truncated, corrupt or not written by "
                               f"contrastseg: {_short(error)}); train it again or copy the complete file") from None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, RecursionError, MemoryError) as error:
        raise ContrastSegError(f"{path}: not a readable checkpoint (truncated or corrupt: {_short(error)}); train "
                               "it again or copy the complete file") from None
    return _checked_metadata(path, payload)


class _Inert:
    """What every class, function and storage named by a pickle becomes in :class:`_InertUnpickler`: it takes any
    arguments and state and does nothing with them."""

    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _InertUnpickler(pickle.Unpickler):
    """Reads a pickle's plain data (dicts, lists, strings, numbers) and replaces every global it names (tensor
    rebuilders, OrderedDict, anything else) and every persistent id (torch's storages) by :class:`_Inert`: nothing
    is imported or called, so a file holding code cannot run it."""

    def find_class(self, module: str, name: str):
        return _Inert

    def persistent_load(self, pid):
        return _Inert()


def _checked_metadata(path: Path, payload: Any) -> dict[str, Any]:
    """The metadata dict of a checkpoint's unpickled ``payload``: ours, in a format version this library reads."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ContrastSegError(f"{path}: not a ContrastSeg checkpoint; pass a .pt file written by contrastseg")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ContrastSegError(
            f"{path}: checkpoint format {version!r} is not one this library reads (≤ {FORMAT_VERSION}); upgrade "
            "contrastseg or use a checkpoint it wrote"
        )
    try:
        metadata = json.loads(payload["metadata"])
    except (KeyError, TypeError, ValueError) as error:
        raise ContrastSegError(f"{path}: checkpoint metadata is damaged ({_short(error)}); train it again") from None
    if not isinstance(metadata, dict):
        raise ContrastSegError(f"{path}: checkpoint metadata is damaged (not a JSON object); train it again")
    return metadata


def _check_torch_file(path: Path) -> None:
    """Refuse a file that torch.save did not write (a zip archive, or a pickle in the legacy format) before
    unpickling it: an image or a text file is "not a checkpoint", not a file "holding Python objects"."""
    if not path.is_file():
        raise ContrastSegError(f"{path}: checkpoint not found; pass the .pt file written by contrastseg finetune")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        raise ContrastSegError(f"{path}: cannot be opened ({error.strerror}); check the path") from None
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return
    what = f"an image file ({image_suffix(path)})" if image_suffix(path) else "a file PyTorch did not write"
    raise ContrastSegError(f"{path}: not a readable checkpoint — it is {what}, not a checkpoint; pass the .pt file "
                           "written by contrastseg finetune")


def lineage_after(checkpoint: Checkpoint | None, path: str | os.PathLike | None) -> list[dict]:
    """The lineage a checkpoint made from ``checkpoint`` (read from ``path``) records: its own lineage plus itself."""
    if checkpoint is None:
        return []
    meta = checkpoint.metadata
    return list(meta.get("lineage", [])) + [{"path": str(path), "stage": meta.get("stage"),
                                             "config": meta.get("config"), "data": meta.get("data")}]


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:160] + "…") if len(text) > 160 else text or type(error).__name__
