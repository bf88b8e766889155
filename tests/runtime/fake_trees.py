"""Fake Linux trees (``/proc``, ``/dev``, ``/sys``, libraries) of the device classes edgetally
targets, for the hardware probes and doctor."""

from __future__ import annotations

import os
from pathlib import Path

X86_BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ssse3 sse4_1 sse4_2 popcnt"


def _write(root: Path, path: str, text: str = "") -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def _link(root: Path, path: str, target: str) -> None:
    link = root / path.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def _x86_cpuinfo(model: str, cores: int, flags: str) -> str:
    block = f"model name\t: {model}\nflags\t\t: {X86_BASE} {flags}\n"
    return "".join(f"processor\t: {i}\n{block}\n" for i in range(cores))


def _arm_cpuinfo(cores: int, features: str, part: str, model: str | None = None) -> str:
    text = "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
        f"CPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
        for i in range(cores)
    )
    return text + (f"Model\t\t: {model}\n" if model else "")


def n100(root: Path) -> Path:
    """Intel N100 mini PC as the brief describes it: AVX2, no VNNI, an Intel iGPU."""
    _write(root, "/proc/cpuinfo", _x86_cpuinfo(
        "Intel(R) N100", 4, "avx avx2 fma f16c bmi2 sha_ni"))
    _write(root, "/sys/class/drm/renderD128/device/vendor", "0x8086\n")
    _write(root, "/sys/bus/usb/devices/1-1/idVendor", "046d\n")
    _write(root, "/sys/bus/usb/devices/1-1/idProduct", "c52b\n")
    return root


def imx8mp(root: Path) -> Path:
    """NXP i.MX 8M Plus EVK: 4x Cortex-A53, galcore NPU, the VX delegate in /usr/lib."""
    _write(root, "/proc/cpuinfo", _arm_cpuinfo(
        4, "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "0xd03"))
    _write(root, "/proc/device-tree/compatible", "fsl,imx8mp-evk\0fsl,imx8mp\0")
    _write(root, "/proc/device-tree/model", "NXP i.MX8MPlus EVK board\0")
    _write(root, "/dev/galcore")
    _write(root, "/sys/module/galcore/version", "6.4.3\n")
    _write(root, "/usr/lib/libvx_delegate.so", "not an ELF file")
    return root


def pi5_hailo(root: Path) -> Path:
    """Raspberry Pi 5 with the AI Kit (Hailo-8L on PCIe) and a Coral USB stick."""
    _write(root, "/proc/cpuinfo", _arm_cpuinfo(
        4, "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
        "lrcpc dcpop asimddp", "0xd0b", "Raspberry Pi 5 Model B Rev 1.0"))
    _write(root, "/proc/device-tree/compatible", "raspberrypi,5-model-b\0brcm,bcm2712\0")
    _write(root, "/proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0")
    _write(root, "/dev/hailo0")
    _write(root, "/sys/module/hailo_pci/version", "4.18.0\n")
    _write(root, "/usr/lib/libhailort.so")
    _write(root, "/sys/bus/usb/devices/3-1/idVendor", "1a6e\n")
    _write(root, "/sys/bus/usb/devices/3-1/idProduct", "089a\n")
    return root


def core_ultra(root: Path) -> Path:
    """Intel Core Ultra 7 155H (Meteor Lake): AVX-VNNI, an NPU bound to intel_vpu, Arc iGPU."""
    _write(root, "/proc/cpuinfo", _x86_cpuinfo(
        "Intel(R) Core(TM) Ultra 7 155H", 4, "avx avx2 fma f16c avx_vnni sha_ni"))
    _write(root, "/dev/accel/accel0")
    _link(root, "/sys/class/accel/accel0/device/driver", "../../../../bus/pci/drivers/intel_vpu")
    _write(root, "/sys/class/drm/renderD128/device/vendor", "0x8086\n")
    _write(root, "/usr/lib/x86_64-linux-gnu/libze_intel_vpu.so.1")
    return root
