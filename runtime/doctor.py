"""``edgetally doctor``: what this device has, what each runtime sees, and what to run.

:func:`probe_runtimes` asks the installed runtimes (onnxruntime's execution providers,
OpenVINO's devices, the LiteRT delegates found on disk, each tried once so a broken one says
why). :func:`recommend` is a pure function of the hardware and runtime reports, so every
device class can be tested from a fake tree.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from edgetally.runtime.hardware import (
    DELEGATE_LIBS,
    DELEGATE_OPTIONS,
    DELEGATE_PACKAGES,
    RUNTIME_LIBS,
    HardwareReport,
    RootFS,
    probe_hardware,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DelegateStatus:
    library: str
    path: str
    what: str
    loads: bool | None  # None: not tried
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RuntimeReport:
    onnxruntime: str | None = None  # version, or None when not installed
    ort_providers: tuple[str, ...] = ()
    openvino: str | None = None
    openvino_devices: dict[str, str] = field(default_factory=dict)  # device -> full name
    litert: str | None = None
    delegates: tuple[DelegateStatus, ...] = ()
    errors: tuple[str, ...] = ()  # a runtime that is installed but failed to answer


@dataclass(frozen=True, slots=True)
class Recommendation:
    backend: str  # openvino | onnxruntime | litert
    device: str  # CPU, GPU, NPU, AUTO, or a LiteRT delegate library path
    precision: str  # int8 | fp32
    model_format: str  # openvino | onnx | tflite
    reason: str
    delegate_options: dict[str, str] = field(default_factory=dict)
    threads: int = 0  # CPU threads to run on (0: the backend's default)
    # For an NPU that runs only models compiled for it: the compiler's next step.
    compile_step: str | None = None

    @property
    def cli_args(self) -> str:
        return f"--backend {self.backend} --device {self.device}"

    @property
    def quantize_format(self) -> str:
        return self.model_format


@dataclass(frozen=True, slots=True)
class DoctorReport:
    hardware: HardwareReport
    runtimes: RuntimeReport
    recommendation: Recommendation
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        hw = asdict(self.hardware)
        hw["cpu"]["vnni"] = self.hardware.cpu.has_vnni
        hw["cpu"]["amx"] = self.hardware.cpu.has_amx
        hw["cpu"]["int8_dot"] = self.hardware.cpu.has_int8_dot
        return {
            "hardware": hw,
            "runtimes": asdict(self.runtimes),
            "recommendation": {
                **asdict(self.recommendation),
                "cli_args": self.recommendation.cli_args,
            },
            "notes": list(self.notes),
        }


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def try_delegate(path: str, options: dict[str, str] | None = None) -> str | None:
    """Load a LiteRT external delegate once; None when it loads, else why it does not."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        return "ai-edge-litert is not installed"
    try:
        # The dynamic loader's own message first (and LiteRT's Delegate object, when its
        # library does not load, complains again on garbage collection).
        ctypes.CDLL(path)
        litert.load_delegate(path, dict(options or {}))
    except (ValueError, OSError, RuntimeError) as exc:
        return _first_line(exc)
    return None


def probe_runtimes(
    hardware: HardwareReport, fs: RootFS | None = None, *, load_delegates: bool = True
) -> RuntimeReport:
    """Ask the installed runtimes what they see. Delegate paths are resolved under ``fs``."""
    fs = fs or RootFS()
    errors: list[str] = []
    ort_version = providers = None
    if importlib.util.find_spec("onnxruntime") is not None:
        try:
            import onnxruntime as ort

            ort_version = ort.__version__
            providers = tuple(
                p.removesuffix("ExecutionProvider") for p in ort.get_available_providers()
            )
        except Exception as exc:  # a broken install must not stop the report
            errors.append(f"onnxruntime: {_first_line(exc)}")
    ov_version, ov_devices = None, {}
    if importlib.util.find_spec("openvino") is not None:
        try:
            import openvino as ov

            core = ov.Core()
            ov_version = ov.get_version().split("-")[0]
            for dev in core.available_devices:
                try:
                    ov_devices[dev] = str(core.get_property(dev, "FULL_DEVICE_NAME"))
                except Exception:
                    ov_devices[dev] = dev
        except Exception as exc:
            errors.append(f"openvino: {_first_line(exc)}")
    delegates = []
    for lib, path in hardware.delegates.items():
        what = DELEGATE_LIBS[lib][0]
        if load_delegates:
            real = str(fs.root / path.lstrip("/"))
            error = try_delegate(real, DELEGATE_OPTIONS.get(lib))
            delegates.append(DelegateStatus(lib, path, what, error is None, error))
        else:
            delegates.append(DelegateStatus(lib, path, what, None))
    return RuntimeReport(
        onnxruntime=ort_version,
        ort_providers=providers or (),
        openvino=ov_version,
        openvino_devices=ov_devices,
        litert=_version("ai-edge-litert"),
        delegates=tuple(delegates),
        errors=tuple(errors),
    )


def _cpu_reason(hw: HardwareReport) -> str:
    cpu = hw.cpu
    if cpu.has_amx:
        return "AMX: int8 matrix tiles, INT8 is several times faster than FP32"
    if cpu.has_vnni:
        return "VNNI: one instruction per int8 dot product, INT8 ~2x faster than FP32"
    if "avx2" in cpu.flags:
        return (
            "AVX2 without VNNI: INT8 runs through 16-bit multiply-adds, so it is only "
            "modestly faster than FP32, but still smaller"
        )
    if "asimddp" in cpu.flags or "i8mm" in cpu.flags:
        return "Arm dot-product (SDOT/I8MM): INT8 is ~2x faster than FP32"
    if "asimd" in cpu.flags:
        return "NEON without dot-product: INT8 gains are modest"
    return "no SIMD int8 support reported: FP32"


def _usable_delegate(
    loaded: dict[str, DelegateStatus], lib: str, npu: str, label: str, notes: list[str]
) -> DelegateStatus | None:
    """The delegate library of an NPU that is present, when it is there and loads;
    otherwise None, and a note says what is missing or why it does not load."""
    status = loaded.get(lib)
    if status is None:
        notes.append(f"{npu} present but {lib} not found (install {DELEGATE_PACKAGES[lib]})")
    elif status.loads is False:
        notes.append(f"{label} {status.path} does not load: {status.error}")
    else:
        return status
    return None


def recommend(hw: HardwareReport, rt: RuntimeReport) -> tuple[Recommendation, tuple[str, ...]]:
    """The backend, device and precision to use here, and notes about what is unused."""
    notes: list[str] = []
    loaded = {d.library: d for d in rt.delegates}
    choice: Recommendation | None = None

    if hw.has("intel-npu"):
        if "NPU" in rt.openvino_devices:
            choice = Recommendation(
                "openvino",
                "NPU",
                "int8",
                "openvino",
                "Intel NPU seen by OpenVINO: INT8 IR runs there",
            )
        elif rt.openvino:
            notes.append(
                "Intel NPU present but OpenVINO does not list it: install the "
                "NPU driver (intel-driver-compiler-npu, level-zero)"
            )
    if hw.has("imx-npu"):
        vx = _usable_delegate(loaded, "libvx_delegate.so", "i.MX NPU", "VX delegate", notes)
        if vx is not None and choice is None and rt.litert:
            choice = Recommendation(
                "litert",
                vx.path,
                "int8",
                "tflite",
                "i.MX 8M Plus NPU through the VX delegate: needs a full-integer TFLite model",
                DELEGATE_OPTIONS["libvx_delegate.so"],
            )
    if hw.has("ethos-u"):
        ethos = _usable_delegate(
            loaded, "libethosu_delegate.so", "Ethos-U NPU", "Ethos-U delegate", notes
        )
        if ethos is not None and choice is None and rt.litert:
            choice = Recommendation(
                "litert",
                ethos.path,
                "int8",
                "tflite",
                "i.MX 93 Ethos-U65 through the Ethos-U delegate: needs a full-integer TFLite "
                "compiled by Vela (operators Vela cannot place run on the Cortex-A55s)",
                DELEGATE_OPTIONS["libethosu_delegate.so"],
                compile_step="vela --accelerator-config ethos-u65-256 MODEL-int8.tflite "
                "(writes output/MODEL-int8_vela.tflite)",
            )
    if hw.has("coral"):
        tpu = _usable_delegate(
            loaded, "libedgetpu.so.1", "Coral Edge TPU", "Edge TPU delegate", notes
        )
        if tpu is not None and choice is None and rt.litert:
            choice = Recommendation(
                "litert",
                tpu.path,
                "int8",
                "tflite",
                "Coral Edge TPU: a full-integer TFLite compiled by edgetpu_compiler "
                "(a _edgetpu.tflite file; any other model runs on the CPU)",
                compile_step="edgetpu_compiler MODEL-int8.tflite "
                "(writes MODEL-int8_edgetpu.tflite)",
            )
    if hw.has("hailo"):
        lib = "found" if "libhailort.so" in hw.runtime_libs else "not found"
        notes.append(
            f"Hailo accelerator present (HailoRT {lib}): it runs only .hef models "
            "compiled by Hailo's Dataflow Compiler, through HailoRT; there is no "
            "LiteRT delegate or onnxruntime provider for it and edgetally has no "
            "HailoRT backend: counting runs on the CPU"
        )
    if hw.has("rockchip-npu"):
        lib = "found" if "librknnrt.so" in hw.runtime_libs else "not found"
        notes.append(
            f"Rockchip NPU present (librknnrt {lib}): it runs only .rknn models "
            "converted by Rockchip's RKNN-Toolkit2 (from ONNX or TFLite), through "
            "librknnrt; there is no LiteRT delegate or onnxruntime provider for it "
            "and edgetally has no RKNN backend: counting runs on the CPU"
        )
    if hw.cpu.big_cores:
        clusters = " + ".join(f"{n}x {name}" for name, n in hw.cpu.clusters)
        notes.append(
            f"big.LITTLE CPU ({clusters}): CPU backends run on the {hw.cpu.big_cores} big cores"
        )
    if hw.has("intel-gpu") and "GPU" in rt.openvino_devices:
        notes.append("Intel GPU seen by OpenVINO: --device GPU (or AUTO) offloads the CPU")
    extra = [p for p in rt.ort_providers if p not in ("CPU", "Azure")]
    if extra:
        notes.append(
            f"onnxruntime execution providers: {', '.join(extra)} "
            "(--backend onnxruntime --device <provider>)"
        )
    for err in rt.errors:
        notes.append(f"runtime error: {err}")

    if choice is None:
        precision = "int8" if hw.cpu.has_int8_dot or "avx2" in hw.cpu.flags else "fp32"
        reason = _cpu_reason(hw)
        threads = hw.cpu.big_cores
        if hw.cpu.arch == "x86_64" and rt.openvino:
            choice = Recommendation(
                "openvino", "CPU", precision, "openvino", f"x86 CPU, OpenVINO: {reason}"
            )
        elif rt.onnxruntime:
            choice = Recommendation(
                "onnxruntime",
                "CPU",
                precision,
                "onnx",
                f"CPU, onnxruntime: {reason}",
                threads=threads,
            )
        elif rt.litert:
            choice = Recommendation(
                "litert",
                "CPU",
                precision,
                "tflite",
                f"CPU, LiteRT (XNNPACK): {reason}",
                threads=threads,
            )
        elif rt.openvino:
            choice = Recommendation(
                "openvino",
                "CPU",
                precision,
                "openvino",
                f"CPU, OpenVINO: {reason}",
                threads=threads,
            )
        else:
            choice = Recommendation(
                "none", "CPU", precision, "onnx", "no inference runtime installed: ./run install"
            )
    return choice, tuple(notes)


def run_doctor(fs: RootFS | None = None, *, load_delegates: bool = True) -> DoctorReport:
    fs = fs or RootFS()
    hw = probe_hardware(fs)
    rt = probe_runtimes(hw, fs, load_delegates=load_delegates)
    rec, notes = recommend(hw, rt)
    return DoctorReport(hw, rt, rec, notes)


def describe(report: DoctorReport) -> list[str]:
    """Human-readable lines of a report."""
    hw, rt, rec = report.hardware, report.runtimes, report.recommendation
    cpu = hw.cpu
    lines = [
        f"CPU:          {cpu.model or '?'} ({cpu.arch}, {cpu.cores} cores)",
        f"  features:   {' '.join(cpu.flags) or '-'}"
        f"  [VNNI {'yes' if cpu.has_vnni else 'no'}, AMX {'yes' if cpu.has_amx else 'no'},"
        f" int8 dot {'yes' if cpu.has_int8_dot else 'no'}]",
        f"SoC:          {', '.join(hw.soc) or '-'}" + (f"  ({hw.board})" if hw.board else ""),
    ]
    if hw.accelerators:
        for acc in hw.accelerators:
            lines.append(f"accelerator:  {acc.name} [{acc.kind}]  ({', '.join(acc.evidence)})")
    else:
        lines.append("accelerator:  none found")
    for lib, path in hw.runtime_libs.items():
        lines.append(f"vendor lib:   {RUNTIME_LIBS[lib]}: {path}")
    lines.append(
        f"onnxruntime:  {rt.onnxruntime or 'not installed'}"
        + (f"  providers: {', '.join(rt.ort_providers)}" if rt.ort_providers else "")
    )
    devices = ", ".join(f"{d} ({n})" for d, n in rt.openvino_devices.items())
    lines.append(
        f"OpenVINO:     {rt.openvino or 'not installed'}"
        + (f"  devices: {devices}" if devices else "")
    )
    lines.append(f"LiteRT:       {rt.litert or 'not installed'}")
    if not rt.delegates:
        lines.append("  delegates:  none on disk")
    for d in rt.delegates:
        state = {True: "loads", False: f"FAILS: {d.error}", None: "not tried"}[d.loads]
        lines.append(f"  delegate:   {d.what}: {d.path} ({state})")
    lines.append(
        f"recommended:  {rec.cli_args}  precision {rec.precision}, model format {rec.model_format}"
    )
    lines.append(f"  because:    {rec.reason}")
    if rec.delegate_options:
        opts = ", ".join(f"{k}={v}" for k, v in rec.delegate_options.items())
        lines.append(f"  delegate options: {opts}")
    if rec.threads:
        lines.append(f"  threads:    {rec.threads} (the big cores)")
    if rec.compile_step:
        lines.append(
            "  model:      edgetally quantize --format tflite writes MODEL-int8.tflite;"
            f" then {rec.compile_step}"
        )
    for note in report.notes:
        lines.append(f"note:         {note}")
    return lines
