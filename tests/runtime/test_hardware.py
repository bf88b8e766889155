from __future__ import annotations

import sys
from pathlib import Path

import pytest
from edgetally.runtime.hardware import RootFS, probe_hardware

sys.path.insert(0, str(Path(__file__).parent))
import fake_trees


def test_n100_has_avx2_without_vnni(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.n100(tmp_path)))
    assert hw.cpu.arch == "x86_64" and hw.cpu.cores == 4 and hw.cpu.model == "Intel(R) N100"
    assert "avx2" in hw.cpu.flags
    assert not hw.cpu.has_vnni and not hw.cpu.has_amx and not hw.cpu.has_int8_dot
    assert [a.kind for a in hw.accelerators] == ["intel-gpu"]  # a Logitech USB id is no Coral
    assert hw.soc == () and hw.board is None


def test_imx8mp_npu_and_vx_delegate(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.imx8mp(tmp_path)))
    assert hw.cpu.arch == "aarch64" and hw.cpu.flags == ("asimd",)
    assert not hw.cpu.has_int8_dot  # Cortex-A53: no SDOT
    assert hw.soc == ("fsl,imx8mp-evk", "fsl,imx8mp")
    assert hw.board == "NXP i.MX8MPlus EVK board"
    (npu,) = hw.accelerators
    assert npu.kind == "imx-npu" and "8M Plus" in npu.name and "/dev/galcore" in npu.evidence
    assert hw.delegates == {"libvx_delegate.so": "/usr/lib/libvx_delegate.so"}


def test_pi5_with_hailo_and_coral_usb(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.pi5_hailo(tmp_path)))
    assert hw.cpu.model == "Raspberry Pi 5 Model B Rev 1.0"
    assert "asimddp" in hw.cpu.flags and hw.cpu.has_int8_dot
    assert hw.soc[-1] == "brcm,bcm2712"
    kinds = {a.kind: a for a in hw.accelerators}
    assert set(kinds) == {"hailo", "coral"}
    assert "/dev/hailo0" in kinds["hailo"].evidence
    assert "1a6e:089a" in kinds["coral"].evidence[0] and "USB" in kinds["coral"].name
    assert hw.runtime_libs == {"libhailort.so": "/usr/lib/libhailort.so"}


def test_core_ultra_npu_by_driver_link(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(fake_trees.core_ultra(tmp_path)))
    assert hw.cpu.has_vnni and "avx_vnni" in hw.cpu.flags
    assert [a.kind for a in hw.accelerators] == ["intel-npu", "intel-gpu"]
    assert hw.accelerators[0].evidence[0] == "/dev/accel/accel0"


def test_accel_node_of_another_driver_is_no_intel_npu(tmp_path: Path) -> None:
    root = fake_trees.core_ultra(tmp_path)
    link = root / "sys/class/accel/accel0/device/driver"
    link.unlink()
    link.symlink_to("../../../../bus/pci/drivers/habanalabs")
    assert not probe_hardware(RootFS(root)).has("intel-npu")


def test_empty_tree_reports_nothing_and_does_not_raise(tmp_path: Path) -> None:
    hw = probe_hardware(RootFS(tmp_path))
    assert hw.cpu.arch == "unknown" and hw.cpu.cores == 0 and hw.accelerators == ()


def test_real_adapter_reads_the_root_by_default() -> None:
    fs = RootFS()
    assert fs.root == Path("/")
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc on this system")
    assert fs.read_text("/proc/cpuinfo") == Path("/proc/cpuinfo").read_text()
    hw = probe_hardware()
    assert hw.cpu.cores >= 1 and hw.cpu.arch in ("x86_64", "aarch64")
