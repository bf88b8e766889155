"""ARM boards and their NPUs on recorded trees: i.MX 8M Plus (VX delegate), i.MX 93 (Ethos-U),
RK3588 (RKNN), Raspberry Pi 4 + Coral USB (Edge TPU), with stand-in delegate libraries built
from standin_delegate.c (a real shared object that LiteRT loads and that claims no operator)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from edgetally.runtime.backends.litert_backend import (
    LiteRtBackend,
    LiteRtConfig,
    check_delegate_library,
    warn_if_not_compiled,
)
from edgetally.runtime.doctor import describe, recommend, run_doctor
from edgetally.runtime.errors import BackendError
from edgetally.runtime.hardware import RootFS, inference_threads, probe_hardware

from tests.conftest import shared_path

sys.path.insert(0, str(Path(__file__).parent))
import fake_trees

STANDIN = Path(__file__).with_name("standin_delegate.c")


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in delegate, compiled once."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in delegate")
    out = tmp_path_factory.mktemp("standin") / "libstandin_delegate.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out), str(STANDIN)], check=True)
    return out


def with_library(root: Path, path: str, standin: Path) -> None:
    """Put the stand-in where the vendor's library would be."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(standin, target)


# --------------------------------------------------------------------------- doctor


def test_imx93_with_its_delegate_recommends_the_ethos_u_and_vela(
    tmp_path: Path, standin: Path
) -> None:
    root = fake_trees.imx93(tmp_path)
    with_library(root, "/usr/lib/libethosu_delegate.so", standin)
    report = run_doctor(RootFS(root))
    hw, rec = report.hardware, report.recommendation
    assert [a.kind for a in hw.accelerators] == ["ethos-u"]
    assert hw.accelerators[0].name == "NXP i.MX 93 Ethos-U65 NPU"
    assert hw.cpu.model == "2x Cortex-A55" and "asimddp" in hw.cpu.flags
    (delegate,) = report.runtimes.delegates
    assert delegate.loads is True, delegate.error
    assert (rec.backend, rec.device, rec.precision, rec.model_format) == (
        "litert",
        "/usr/lib/libethosu_delegate.so",
        "int8",
        "tflite",
    )
    assert rec.compile_step is not None and rec.compile_step.startswith(
        "vela --accelerator-config ethos-u65-256 "
    )
    text = "\n".join(describe(report))
    assert "edgetally quantize --format tflite writes MODEL-int8.tflite; then vela" in text


def test_imx93_without_its_delegate_names_the_package_and_uses_the_cpu(tmp_path: Path) -> None:
    root = fake_trees.imx93(tmp_path)
    (root / "usr/lib/libethosu_delegate.so").unlink()
    report = run_doctor(RootFS(root))
    assert report.recommendation.device == "CPU"
    assert report.recommendation.precision == "int8"  # the A55's dot product
    assert any(
        "libethosu_delegate.so not found (install NXP's tflite-ethosu-delegate" in n
        for n in report.notes
    )


def test_imx8mp_with_its_delegate_recommends_the_vx_delegate(tmp_path: Path, standin: Path) -> None:
    root = fake_trees.imx8mp(tmp_path)
    (root / "usr/lib/libvx_delegate.so").unlink()
    with_library(root, "/usr/lib/libvx_delegate.so", standin)
    rec = run_doctor(RootFS(root)).recommendation
    assert (rec.backend, rec.device, rec.precision) == (
        "litert",
        "/usr/lib/libvx_delegate.so",
        "int8",
    )
    assert rec.delegate_options["cache_file_path"] == "/var/tmp/edgetally-vx.cache"
    assert rec.compile_step is None  # the VX delegate compiles for the NPU at load


def test_coral_usb_with_libedgetpu_recommends_an_edgetpu_model(
    tmp_path: Path, standin: Path
) -> None:
    root = fake_trees.coral_usb(tmp_path)
    (root / "usr/lib/aarch64-linux-gnu/libedgetpu.so.1").unlink()
    with_library(root, "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", standin)
    report = run_doctor(RootFS(root))
    assert [a.name for a in report.hardware.accelerators] == ["Coral Edge TPU (USB)"]
    rec = report.recommendation
    assert (rec.backend, rec.device, rec.model_format) == (
        "litert",
        "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1",
        "tflite",
    )
    assert "_edgetpu.tflite" in rec.reason
    assert rec.compile_step == (
        "edgetpu_compiler MODEL-int8.tflite (writes MODEL-int8_edgetpu.tflite)"
    )


def test_rk3588_says_the_rknn_path_and_runs_on_the_big_cores(tmp_path: Path) -> None:
    root = fake_trees.rk3588(tmp_path)
    hw = probe_hardware(RootFS(root))
    assert hw.cpu.model == "4x Cortex-A55 + 4x Cortex-A76" and hw.cpu.cores == 8
    assert hw.cpu.big_cores == 4
    (npu,) = hw.accelerators
    assert npu.kind == "rockchip-npu" and npu.name == "Rockchip NPU (rk3588)"
    assert npu.evidence == ("/proc/device-tree/npu@fdab0000",)
    rec, notes = recommend(hw, run_doctor(RootFS(root), load_delegates=False).runtimes)
    assert (rec.backend, rec.device, rec.precision, rec.threads) == (
        "onnxruntime",
        "CPU",
        "int8",
        4,
    )
    rknn = next(n for n in notes if n.startswith("Rockchip NPU"))
    assert "librknnrt found" in rknn and "RKNN-Toolkit2" in rknn and "no RKNN backend" in rknn
    assert any("4x Cortex-A55 + 4x Cortex-A76" in n and "4 big cores" in n for n in notes)


def test_inference_threads_are_the_big_cores_only_on_big_little(tmp_path: Path) -> None:
    assert inference_threads(RootFS(fake_trees.rk3588(tmp_path / "rk"))) == 4
    assert inference_threads(RootFS(fake_trees.pi5_hailo(tmp_path / "pi"))) == 0
    assert inference_threads(RootFS(fake_trees.imx93(tmp_path / "imx"))) == 0


def test_cli_doctor_on_the_imx93_tree(tmp_path: Path) -> None:
    root = fake_trees.imx93(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "edgetally", "doctor", "--root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "NXP i.MX 93 Ethos-U65 NPU [ethos-u]" in done.stdout
    assert "Ethos-U delegate /usr/lib/libethosu_delegate.so does not load" in done.stdout


# --------------------------------------------------------------------------- delegates


def test_a_missing_delegate_library_is_one_line_naming_what_installs_it(tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not used")
    with pytest.raises(BackendError) as info:
        LiteRtBackend(model, str(tmp_path / "usr/lib/libvx_delegate.so"), LiteRtConfig())
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"LiteRT delegate library {tmp_path}/usr/lib/libvx_delegate.so not "
        "found: install NXP's tflite-vx-delegate (in the i.MX 8M Plus Yocto "
        "BSP image)"
    )


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("libedgetpu.so.1", "libedgetpu1-std"),
        ("libethosu_delegate.so", "tflite-ethosu-delegate"),
    ],
)
def test_a_broken_delegate_library_says_why_it_does_not_load(
    tmp_path: Path, name: str, package: str
) -> None:
    lib = tmp_path / name
    lib.write_text("not an ELF file")
    with pytest.raises(BackendError, match=rf"does not load \(.*\): install .*{package}") as info:
        check_delegate_library(str(lib))
    assert "\n" not in str(info.value)


def test_a_bare_library_name_not_on_the_loader_path_is_an_error() -> None:
    with pytest.raises(BackendError, match=r"libedgetpu\.so\.1 does not load .*libedgetpu1-std"):
        check_delegate_library("libedgetpu.so.1")


def test_a_model_not_compiled_for_the_npu_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain, compiled = tmp_path / "m-int8.tflite", tmp_path / "m-int8_edgetpu.tflite"
    plain.write_bytes(b"TFL3 ... CONV_2D ...")
    compiled.write_bytes(b"TFL3 ... edgetpu-custom-op ...")
    with caplog.at_level(logging.WARNING):
        warn_if_not_compiled(compiled, "/usr/lib/libedgetpu.so.1")
        assert not caplog.records
        warn_if_not_compiled(plain, "/usr/lib/libedgetpu.so.1")
        warn_if_not_compiled(plain, "/usr/lib/libvx_delegate.so")  # compiles at load: silent
    (record,) = caplog.records
    assert record.getMessage() == (
        "m-int8.tflite is not compiled for libedgetpu.so.1: it runs "
        "on the CPU; compile it first: edgetpu_compiler m-int8.tflite"
    )


def test_a_model_runs_through_a_stand_in_delegate_with_the_same_outputs(standin: Path) -> None:
    model = shared_path("models", "ssd_mobilenet_v1_coco_quant.tflite")
    image = np.random.default_rng(0).integers(0, 255, (1, 300, 300, 3), dtype=np.uint8)
    on_cpu = LiteRtBackend(model, None, LiteRtConfig())
    delegated = LiteRtBackend(model, str(standin), LiteRtConfig())
    assert delegated.info.device == "libstandin_delegate.so"
    for a, b in zip(on_cpu.run([image]), delegated.run([image]), strict=True):
        np.testing.assert_array_equal(a, b)
