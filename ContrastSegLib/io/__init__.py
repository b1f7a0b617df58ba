"""Volumes in and out: NIfTI, NRRD, MetaImage, DICOM series; geometry kept exactly; atomic writes."""

from .read import case_stem, image_suffix, read_image, read_label
from .read_checks import max_voxels, reading, voxel_limit
from .volume import Volume, check_image, check_label
from .output_path import atomic_path, check_output_path, write_errors
from .write import write_image_like, write_volume
from .write_file import write_bytes, write_text

__all__ = [
    "Volume", "atomic_path", "case_stem", "check_image", "check_label", "check_output_path", "image_suffix",
    "max_voxels", "read_image", "reading", "read_label", "voxel_limit", "write_bytes", "write_errors", "write_image_like",
    "write_text", "write_volume",
]
