from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgetally.runtime.doctor import (
    DelegateStatus,
    RuntimeReport,
    describe,
    probe_runtimes,
    recommend,
    run_doctor,
)
from edgetally.runtime.hardware import RootFS, probe_hardware

sys.path.insert(0, str(Path(__file__).parent))
import fake_trees

ALL = RuntimeReport(
    onnxruntime="1.23",
    ort_providers=("CPU",),
    openvino="2026.0",
    openvino_devices={"CPU": "cpu"},
    litert="2.0",
)


def test_n100_recommends_openvino_cpu_and_mentions_gpu(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.n100(tmp_path)))
    rt = RuntimeReport(
        onnxruntime="1.23",
        ort_providers=("CPU",),
        openvino="2026.0",
        openvino_devices={"CPU": "cpu", "GPU": "Intel UHD"},
        litert="2.0",
    )
    rec, notes = recommend(hw, rt)
    assert (rec.backend, rec.device, rec.model_format) == ("openvino", "CPU", "openvino")
    assert "without VNNI" in rec.reason
    assert any("--device GPU" in n for n in notes)


def test_core_ultra_uses_the_npu_when_openvino_sees_it(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.core_ultra(tmp_path)))
    rt = RuntimeReport(openvino="2026.0", openvino_devices={"CPU": "c", "GPU": "g", "NPU": "n"})
    rec, _ = recommend(hw, rt)
    assert (rec.backend, rec.device, rec.precision) == ("openvino", "NPU", "int8")


def test_core_ultra_without_npu_driver_falls_back_to_cpu_and_says_why(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.core_ultra(tmp_path)))
    rec, notes = recommend(hw, ALL)
    assert (rec.backend, rec.device, rec.precision) == ("openvino", "CPU", "int8")
    assert "VNNI" in rec.reason
    assert any("NPU present but OpenVINO does not list it" in n for n in notes)


def test_imx8mp_uses_the_vx_delegate_with_its_options(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.imx8mp(tmp_path)))
    rt = RuntimeReport(
        onnxruntime="1.23",
        litert="2.0",
        delegates=(DelegateStatus("libvx_delegate.so", "/usr/lib/libvx_delegate.so", "VX", True),),
    )
    rec, _ = recommend(hw, rt)
    assert (rec.backend, rec.device, rec.precision, rec.model_format) == (
        "litert",
        "/usr/lib/libvx_delegate.so",
        "int8",
        "tflite",
    )
    assert rec.delegate_options["allowed_cache_mode"] == "true"


def test_imx8mp_with_a_broken_delegate_says_why_and_uses_the_cpu(tmp_path: Path) -> None:
    root = fake_trees.imx8mp(tmp_path)
    # The real probe tries to load the (fake, not-ELF) library and reports the loader's error.
    report = run_doctor(RootFS(root))
    (vx,) = report.runtimes.delegates
    assert vx.loads is False and vx.error
    assert report.recommendation.device == "CPU"
    assert any("does not load" in n and vx.error in n for n in report.notes)


def test_pi5_hailo_is_named_but_cpu_is_used(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.pi5_hailo(tmp_path)))
    rec, notes = recommend(hw, RuntimeReport(onnxruntime="1.23", ort_providers=("CPU",)))
    assert (rec.backend, rec.device, rec.precision) == ("onnxruntime", "CPU", "int8")
    assert "dot-product" in rec.reason
    assert any("Hailo" in n and "HailoRT found" in n for n in notes)
    assert any("libedgetpu.so.1 not found" in n for n in notes)


def test_probe_runtimes_sees_the_installed_runtimes(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.n100(tmp_path)))
    rt = probe_runtimes(hw, RootFS(tmp_path))
    assert rt.onnxruntime and "CPU" in rt.ort_providers
    assert rt.openvino and "CPU" in rt.openvino_devices
    assert rt.litert and rt.delegates == ()


def test_describe_and_json_of_a_fake_tree(tmp_path: Path) -> None:
    report = run_doctor(RootFS(fake_trees.pi5_hailo(tmp_path)), load_delegates=False)
    text = "\n".join(describe(report))
    assert "Hailo-8/8L" in text and "recommended:" in text
    data = report.to_dict()
    json.dumps(data)
    assert data["hardware"]["cpu"]["int8_dot"] is True


def test_cli_doctor_json(tmp_path: Path) -> None:
    root = fake_trees.core_ultra(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "edgetally", "doctor", "--json", "--root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    assert data["hardware"]["accelerators"][0]["kind"] == "intel-npu"
    assert data["recommendation"]["backend"] == "openvino"
