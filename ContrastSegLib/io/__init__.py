"""Volumes in and out: NIfTI, NRRD, MetaImage, DICOM series; geometry kept exactly; atomic writes."""

from .read import case_stem, image_suffix, read_image, read_label
from .volume import Volume, check_image, check_label
from .write import atomic_path, check_output_path, write_image_like, write_volume

__all__ = [
    "Volume", "atomic_path", "case_stem", "check_image", "check_label", "check_output_path", "image_suffix",
    "read_image", "read_label", "write_image_like", "write_volume",
]
