"""`edgetally quantize`: post-training INT8 with an accuracy gate."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from edgetally.progress import progress


def register(app: typer.Typer) -> None:
    @app.command("quantize")
    def quantize(
        model: str = typer.Argument(..., metavar="MODEL", help="A zoo name or an FP32 model file."),
        calib: Path = typer.Option(
            ...,
            "--calib",
            metavar="PATH",
            help="Folder of calibration images, or a video / MOT sequence (see --calib-stride).",
        ),
        fmt: str = typer.Option(
            ..., "--format", metavar="FORMAT", help="openvino (IR), onnx (QDQ) or tflite."
        ),
        out: Path = typer.Option(
            ..., "--out", metavar="DIR", help="Folder for the INT8 model and manifest."
        ),
        eval_seq: Path | None = typer.Option(
            None,
            "--eval",
            metavar="SEQ_DIR",
            help="A MOT sequence to judge agreement and count accuracy on.",
        ),
        line: list[str] = typer.Option(
            [], "--line", metavar="X1,Y1,X2,Y2", help="Counting line for --eval (repeat)."
        ),
        family: str | None = typer.Option(
            None,
            "--family",
            metavar="FAMILY",
            help="Processing family of an unknown model file: yolox | tf-ssd | tflite-ssd.",
        ),
        force: bool = typer.Option(
            False, "--force", help="Write the model even if the gate fails."
        ),
        max_images: int = typer.Option(
            300,
            "--max-images",
            min=1,
            metavar="N",
            help="Use at most this many calibration images.",
        ),
        calib_stride: int = typer.Option(
            1,
            "--calib-stride",
            min=1,
            metavar="N",
            help="With a video or sequence as --calib: use every N-th frame.",
        ),
        keep_head_fp32: bool = typer.Option(
            True,
            "--keep-head-fp32/--quantize-head",
            help="openvino: keep the detection head's prediction convolutions and the output "
            "sub-graph in FP32 (default) or quantize them too.",
        ),
        keep_depthwise_fp32: bool = typer.Option(
            True,
            "--keep-depthwise-fp32/--quantize-depthwise",
            help="openvino: keep grouped (depthwise) convolutions in FP32 (default) or "
            "quantize them too.",
        ),
        preset: str = typer.Option(
            "mixed",
            "--preset",
            metavar="PRESET",
            help="openvino: NNCF preset, mixed (asymmetric activations) or performance.",
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the result as JSON (and no progress)."
        ),
    ) -> None:
        """Quantize MODEL to INT8 on real images; write it only if it keeps its accuracy
        (agreement >= 0.95 with FP32 boxes, count accuracy at most 0.02 lower)."""
        from edgetally.quantize.errors import QuantizeError
        from edgetally.quantize.gate import DIAGNOSTIC_DROP
        from edgetally.quantize.pipeline import quantize_model

        with progress("frames", quiet=as_json) as told:
            result = quantize_model(
                model,
                calib,
                fmt,
                out,
                eval_seq=eval_seq,
                lines=line,
                force=force,
                family=family,
                calib_limit=max_images,
                calib_stride=calib_stride,
                keep_head_fp32=keep_head_fp32,
                keep_depthwise_fp32=keep_depthwise_fp32,
                preset=preset,
                progress=told,
            )
        data = result.as_json()
        if as_json:
            typer.echo(json.dumps(data))
        else:
            c = result.comparison
            agreement = "n/a" if c.agreement is None else f"{c.agreement:.3f}"
            typer.echo(
                f"{result.format}: size {data['size_fp32']} -> {data['size_int8']} bytes, "
                f"{data['fp32_ms']:.2f} -> {data['int8_ms']:.2f} ms/frame, agreement "
                f"{agreement} ({c.matched_boxes}/{c.reference_boxes} boxes on {c.frames} frames, "
                f"score >= {c.score_threshold:g} for both)"
            )
            if c.agreement_lower is not None:
                typer.echo(
                    f"diagnostic, not gated: {c.agreement_lower:.3f} of the FP32 boxes "
                    f"with INT8 boxes down to score {c.score_threshold - DIAGNOSTIC_DROP:g}"
                )
            if result.count_accuracy_fp32 is not None:
                typer.echo(
                    f"count accuracy {result.count_accuracy_fp32:.3f} (FP32) -> "
                    f"{result.count_accuracy_int8:.3f} (INT8)"
                )
            if result.out is not None:
                typer.echo(f"wrote {result.out}")
        if not result.passed and result.out is None:  # written with --force: a warning said so
            why = "; ".join(result.reasons)
            raise QuantizeError(
                f"accuracy gate refused the INT8 model ({why}); nothing "
                "written (--force writes it anyway)"
            )
