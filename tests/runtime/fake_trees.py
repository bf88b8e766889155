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


def _arm_cpuinfo(
    cores: int, features: str, part: str, model: str | None = None, first: int = 0
) -> str:
    text = "".join(
        f"processor\t: {first + i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n"
        f"CPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
        for i in range(cores)
    )
    return text + (f"Model\t\t: {model}\n" if model else "")


def n100(root: Path) -> Path:
    """Intel N100 mini PC as the brief describes it: AVX2, no VNNI, an Intel iGPU."""
    _write(root, "/proc/cpuinfo", _x86_cpuinfo("Intel(R) N100", 4, "avx avx2 fma f16c bmi2 sha_ni"))
    _write(root, "/sys/class/drm/renderD128/device/vendor", "0x8086\n")
    _write(root, "/sys/bus/usb/devices/1-1/idVendor", "046d\n")
    _write(root, "/sys/bus/usb/devices/1-1/idProduct", "c52b\n")
    return root


def _hwmon(root: Path, n: int, device: str, files: dict[str, str]) -> None:
    """/sys/class/hwmon/hwmonN as the kernel makes it: a link to the chip's device folder."""
    target = f"/sys/devices/platform/{device}/hwmon/hwmon{n}"
    for name, text in files.items():
        _write(root, f"{target}/{name}", text)
    _link(root, f"/sys/class/hwmon/hwmon{n}", f"../../devices/platform/{device}/hwmon/hwmon{n}")


def imx8mp(root: Path) -> Path:
    """NXP i.MX 8M Plus EVK: 4x Cortex-A53, galcore NPU, the VX delegate in /usr/lib, the
    SoC's thermal sensor and an INA219 on the 5 V input (ina2xx driver) in hwmon."""
    _write(
        root,
        "/proc/cpuinfo",
        _arm_cpuinfo(4, "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "0xd03"),
    )
    _write(root, "/proc/device-tree/compatible", "fsl,imx8mp-evk\0fsl,imx8mp\0")
    _write(root, "/proc/device-tree/model", "NXP i.MX8MPlus EVK board\0")
    _write(root, "/dev/galcore")
    _write(root, "/sys/module/galcore/version", "6.4.3\n")
    _write(root, "/usr/lib/libvx_delegate.so", "not an ELF file")
    _hwmon(root, 0, "soc@0/30260000.tmu", {"name": "cpu_thermal\n", "temp1_input": "46000\n"})
    # 5.12 V x 0.7 A: power1_input in microwatts, as the ina2xx driver gives it.
    _hwmon(
        root,
        1,
        "soc@0/30800000.bus/30a30000.i2c/i2c-1/1-0040",
        {
            "name": "ina219\n",
            "in0_input": "1\n",
            "in1_input": "5120\n",
            "curr1_input": "700\n",
            "power1_input": "3584000\n",
            "shunt_resistor": "100000\n",
        },
    )
    return root


def imx93(root: Path) -> Path:
    """NXP i.MX 93 EVK: 2x Cortex-A55, the Ethos-U65 NPU (/dev/ethosu0), the Ethos-U delegate
    in /usr/lib, and an INA3221 whose first channel is the board's 5 V input."""
    _write(
        root,
        "/proc/cpuinfo",
        _arm_cpuinfo(
            2,
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
            "lrcpc dcpop asimddp",
            "0xd05",
        ),
    )
    _write(root, "/proc/device-tree/compatible", "fsl,imx93-11x11-evk\0fsl,imx93\0")
    _write(root, "/proc/device-tree/model", "NXP i.MX93 11X11 EVK board\0")
    _write(root, "/dev/ethosu0")
    _write(root, "/sys/module/ethosu/refcnt", "0\n")
    _write(root, "/usr/lib/libethosu_delegate.so", "not an ELF file")
    _hwmon(
        root,
        0,
        "soc@0/44480000.bus/44350000.i2c/i2c-0/0-0040",
        {
            "name": "ina3221\n",
            "in1_label": "VDD_5V_IN\n",
            "in1_input": "5040\n",
            "curr1_input": "520\n",
            "in2_label": "VDD_SOC\n",
            "in2_input": "900\n",
            "curr2_input": "610\n",
            "in3_label": "NVCC_3V3\n",
            "in3_input": "3300\n",
            "curr3_input": "80\n",
        },
    )
    return root


def rk3588(root: Path) -> Path:
    """Rockchip RK3588 board (Radxa ROCK 5B): 4x Cortex-A55 + 4x Cortex-A76, the NPU on the
    vendor kernel's rknpu driver, Rockchip's runtime librknnrt.so."""
    features = (
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
        "lrcpc dcpop asimddp"
    )
    little = _arm_cpuinfo(4, features, "0xd05")
    big = _arm_cpuinfo(4, features, "0xd0b", first=4)
    _write(root, "/proc/cpuinfo", little + big)
    _write(root, "/proc/device-tree/compatible", "radxa,rock-5b\0rockchip,rk3588\0")
    _write(root, "/proc/device-tree/model", "Radxa ROCK 5B\0")
    _write(root, "/proc/device-tree/npu@fdab0000/compatible", "rockchip,rk3588-rknpu\0")
    _write(root, "/dev/dri/renderD129")
    _write(root, "/usr/lib/librknnrt.so")
    return root


def coral_usb(root: Path) -> Path:
    """Raspberry Pi 4 with a Coral USB Accelerator and Coral's libedgetpu1-std installed."""
    _write(
        root,
        "/proc/cpuinfo",
        _arm_cpuinfo(4, "fp asimd evtstrm crc32 cpuid", "0xd08", "Raspberry Pi 4 Model B Rev 1.5"),
    )
    _write(root, "/proc/device-tree/compatible", "raspberrypi,4-model-b\0brcm,bcm2711\0")
    _write(root, "/proc/device-tree/model", "Raspberry Pi 4 Model B Rev 1.5\0")
    _write(root, "/sys/bus/usb/devices/2-1/idVendor", "18d1\n")
    _write(root, "/sys/bus/usb/devices/2-1/idProduct", "9302\n")
    _write(root, "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1", "not an ELF file")
    return root


def pi5_hailo(root: Path) -> Path:
    """Raspberry Pi 5 with the AI Kit (Hailo-8L on PCIe) and a Coral USB stick."""
    _write(
        root,
        "/proc/cpuinfo",
        _arm_cpuinfo(
            4,
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
            "lrcpc dcpop asimddp",
            "0xd0b",
            "Raspberry Pi 5 Model B Rev 1.0",
        ),
    )
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
    _write(
        root,
        "/proc/cpuinfo",
        _x86_cpuinfo("Intel(R) Core(TM) Ultra 7 155H", 4, "avx avx2 fma f16c avx_vnni sha_ni"),
    )
    _write(root, "/dev/accel/accel0")
    _link(root, "/sys/class/accel/accel0/device/driver", "../../../../bus/pci/drivers/intel_vpu")
    _write(root, "/sys/class/drm/renderD128/device/vendor", "0x8086\n")
    _write(root, "/usr/lib/x86_64-linux-gnu/libze_intel_vpu.so.1")
    return root
