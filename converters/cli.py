"""`spiketrack export`: argument definitions and the command (the lead registers it in spiketrack.cli).

Formats dispatch on `EXPORTERS` (format name -> command function); other formats (onnx, nir) add
their own entry.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def export_lava_command(args: argparse.Namespace) -> int:
    """Quantize, write the Lava bundle and print the Loihi 2 mapping table."""
    from converters.export_lava import export_bundle
    from converters.quantize import default_calibration_frames

    frames = default_calibration_frames(args.calibration_frames)
    report = export_bundle(args.checkpoint, args.out, frames, variant=args.variant)
    print(f"exported {report.variant} ({report.weights}) -> {report.out}")
    print(f"  {len(report.netx_files)} netx HDF5 files; calibration on {len(frames)} packaged-image crops")
    clipped = report.quant.clipped_layers()
    if clipped:
        worst = max(clipped, key=lambda r: r.max_clip_error)
        print(f"  {len(clipped)} layer(s) clip weights or biases (the mse exponent policy clips outliers when that "
              f"lowers the error; worst {worst.graph}/{worst.id}: {worst.clipped} weights, max error "
              f"{worst.max_clip_error:.3g}, {worst.bias_saturated} biases saturated); "
              "details in manifest.json meta.quant_report")
    print(report.mapping.format(detail=args.detail))
    return 0


def export_model_command(args: argparse.Namespace, command: Callable) -> int:
    """Resolve --checkpoint / --variant (no checkpoint: procedural weights, said so) and run an
    interop exporter `command(model, out) -> summary`."""
    from converters.onnx_export import check_out_dir
    from spiketrack.default_model import resolve_model

    check_out_dir(args.out)
    resolved = resolve_model(args.checkpoint, args.variant)
    print(f"model: {resolved.model.cfg.name}, weights: {resolved.weights}")
    print(command(resolved.model, args.out))
    return 0


def export_onnx_cli(args: argparse.Namespace) -> int:
    """Float ONNX graphs (template encoder + tracking step)."""
    from converters.onnx_export import export_onnx_command

    return export_model_command(args, export_onnx_command)


def export_nir_cli(args: argparse.Namespace) -> int:
    """NIR graphs of the binary-expanded network (unsupported parts marked as cuts)."""
    from converters.nir_export import export_nir_command

    return export_model_command(args, export_nir_command)


EXPORTERS: dict[str, Callable[[argparse.Namespace], int]] = {"lava": export_lava_command, "onnx": export_onnx_cli,
                                                             "nir": export_nir_cli}


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """--format, --checkpoint, --variant, --out, --calibration-frames, --detail."""
    parser.add_argument("--format", choices=sorted(EXPORTERS), default="lava", help="export format (default lava)")
    parser.add_argument("--checkpoint", type=Path, help="spiketrack checkpoint (default: the default model)")
    parser.add_argument("--variant", help="without --checkpoint: procedural weights of this variant")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    parser.add_argument("--calibration-frames", type=int, default=None,
                        help="use only the first N calibration crops (default: all packaged-image crops)")
    parser.add_argument("--detail", action="store_true", help="print the per-node mapping table, not only totals")


def run_export_command(args: argparse.Namespace) -> int:
    """Dispatch on --format."""
    return EXPORTERS[args.format](args)
