"""Fine-tune ContrastSeg on labeled scans and segment others, from a script, without the GUI.

In Slicer (with the extension installed):
    Slicer --no-splash --no-main-window --python-script examples/slicer_headless.py \
        --labeled scan1.nrrd scan1.seg.nrrd --labeled scan2.nrrd scan2.seg.nrrd \
        --segment scan3.nrrd scan4.nrrd --pretrained pretrained.pt --out results/ --install-packages
Or with plain Python and the ``slicer-core`` wheel (``pip install slicer-core``), from a source checkout:
    python examples/slicer_headless.py --labeled ... --segment ... --out results/

Writes ``results/model.pt`` (``model-2.pt``, ... when one is there already) and one ``<scan> ContrastSeg.seg.nrrd``
per segmented scan (segment names and colours from the labeled segmentations). Labels may be ``.seg.nrrd`` files or
label maps.

Without a main window nobody can answer the module's question before it installs the Python packages it needs
(torch through the PyTorch extension, monai, nibabel, ...). On the first run pass ``--install-packages`` (or set the
environment variable ``CONTRASTSEG_INSTALL_PACKAGES=1``) to install them without a question; otherwise the script
prints an error naming what is missing and exits with code 1, as on any error (so Slicer ends too).
"""

import argparse
import sys
from pathlib import Path

try:  # inside Slicer: the module's logic, which installs what is missing at the first job
    import qt  # noqa: F401
    from ContrastSeg import ContrastSegLogic as Logic
except ImportError:  # plain Python with slicer-core, from a source checkout: the Qt-free workflow
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ContrastSeg"))
    from ContrastSegLogic import ContrastSegWorkflow as Logic

from dataclasses import replace

from ContrastSegLib.settings import FinetuneConfig, PreprocessConfig
from ContrastSegLogic.headless import ensure_scene
from ContrastSegLogic.scene_io import read_scalar_volume, read_segmentation_file, write_segmentation_file


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labeled", nargs=2, action="append", required=True, metavar=("IMAGE", "LABELS"))
    parser.add_argument("--segment", nargs="+", required=True, metavar="IMAGE")
    parser.add_argument("--pretrained", help="checkpoint from contrastseg pretrain (optional)")
    parser.add_argument("--iterations", type=int, default=FinetuneConfig().iterations)
    parser.add_argument("--crop-size", type=int, default=PreprocessConfig().crop_size)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--install-packages", action="store_true", default=None,
                        help="in Slicer: install the missing Python packages without asking (first run)")
    args = parser.parse_args(argv)

    scene = ensure_scene()
    args.out.mkdir(parents=True, exist_ok=True)
    logic = Logic(scene, models_dir=args.out)
    if hasattr(logic, "ensure_dependencies"):  # in Slicer: the packages now, before any work (a checkout has them)
        logic.ensure_dependencies(install=args.install_packages)
    labeled = []
    for image, labels in args.labeled:
        volume = read_scalar_volume(scene, image, Path(image).name.split(".")[0])
        labeled.append((volume, read_segmentation_file(scene, labels)))
    settings = replace(FinetuneConfig(), iterations=args.iterations, device=args.device)
    model = logic.finetune(labeled, pretrained=args.pretrained, settings=settings,
                           preprocess=replace(PreprocessConfig(), crop_size=args.crop_size),
                           model_path=str(args.out / "model.pt"), wait=True,
                           on_event=lambda job, event: print(job.progress.text(), flush=True)
                           if event.get("event") == "progress" else None)
    print(f"model: {model}")
    for image in args.segment:
        volume = read_scalar_volume(scene, image, Path(image).name.split(".")[0])
        result = logic.segment(volume, model, device=args.device, wait=True)
        print(f"wrote {write_segmentation_file(result, args.out / (result.GetName() + '.seg.nrrd'))}")
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    except Exception:  # noqa: BLE001 - printed; an exception alone would leave a headless Slicer running
        import traceback
        traceback.print_exc()
        code = 1
    sys.exit(code)  # also ends a headless Slicer
