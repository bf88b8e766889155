"""What this device is made of: CPU features, SoC, NPUs and accelerators, delegate libraries.

Everything is read from the usual Linux places (``/proc/cpuinfo``, ``/proc/device-tree``,
``/dev``, ``/sys/module``, ``/sys/bus/usb/devices``, the library directories) through one
adapter, :class:`RootFS`, whose paths are relative to a root directory. The default root is
``/``; tests point it at a fake tree so an i.MX 8M Plus or a Core Ultra can be checked on a
laptop. Nothing here imports an inference runtime: that is :mod:`edgetally.runtime.doctor`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# Directories where vendors install TFLite delegates and accelerator runtimes.
LIB_DIRS: tuple[str, ...] = (
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/arm-linux-gnueabihf",
)

# LiteRT external delegates: library file -> (what it drives, the accelerator it needs).
DELEGATE_LIBS: dict[str, tuple[str, str]] = {
    "libvx_delegate.so": ("VeriSilicon VX delegate (NXP i.MX 8M Plus NPU)", "imx-npu"),
    "libedgetpu.so.1": ("Coral Edge TPU delegate", "coral"),
    "libarmnnDelegate.so": ("Arm NN delegate (Mali GPU / Cortex-A CPU)", "arm"),
    "libethosu_delegate.so": ("Arm Ethos-U delegate (NXP i.MX 93 NPU)", "ethos-u"),
}

# What installs each delegate library, for the one-line error when it is missing.
DELEGATE_PACKAGES: dict[str, str] = {
    "libvx_delegate.so": "NXP's tflite-vx-delegate (in the i.MX 8M Plus Yocto BSP image)",
    "libedgetpu.so.1": "Coral's libedgetpu1-std (apt, https://coral.ai/software)",
    "libarmnnDelegate.so": "Arm NN (libarmnn-delegate)",
    "libethosu_delegate.so": "NXP's tflite-ethosu-delegate (in the i.MX 93 Yocto BSP image)",
}

# Vendor runtimes that edgetally has no backend for yet, but doctor should name.
RUNTIME_LIBS: dict[str, str] = {
    "libhailort.so": "HailoRT",
    "librknnrt.so": "Rockchip RKNN runtime",
    "libze_intel_vpu.so.1": "Intel NPU Level Zero driver",
    "libze_intel_npu.so": "Intel NPU Level Zero driver",
}

# Options LiteRT passes to known external delegates when none are configured.
DELEGATE_OPTIONS: dict[str, dict[str, str]] = {
    # tflite-vx-delegate: cache the graph compiled for the NPU (first run takes seconds).
    "libvx_delegate.so": {
        "allowed_cache_mode": "true",
        "cache_file_path": "/var/tmp/edgetally-vx.cache",
    },
    "libedgetpu.so.1": {},
    "libethosu_delegate.so": {},
}

# Arm cores by "CPU part" (implementer 0x41), to name big.LITTLE clusters.
ARM_PARTS: dict[str, str] = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd4d": "Cortex-A715",
}
# The bigger core of a pair (for the threads a big.LITTLE SoC should run inference on).
ARM_LITTLE = frozenset({"0xd03", "0xd04", "0xd05", "0xd46"})

# USB vendor:product ids of Coral USB accelerators (before and after firmware load).
CORAL_USB_IDS: frozenset[str] = frozenset({"1a6e:089a", "18d1:9302"})

# CPU flags worth reporting for inference (x86 "flags", Arm "Features").
X86_FLAGS: tuple[str, ...] = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
ARM_FLAGS: tuple[str, ...] = (
    "asimd",
    "fphp",
    "asimdhp",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)


class RootFS:
    """Reads the system's files under ``root`` (``/`` by default); never raises on absence.

    Paths are written as on a real system (``/proc/cpuinfo``) and resolved under the root.
    """

    def __init__(self, root: Path | str = "/") -> None:
        self.root = Path(root)

    def _p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read_text(self, path: str) -> str | None:
        try:
            return self._p(path).read_text(errors="replace")
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.lexists(self._p(path))

    def glob(self, pattern: str) -> list[str]:
        """Absolute (system) paths matching ``pattern``, e.g. ``/dev/accel/accel*``."""
        try:
            found = sorted(self.root.glob(pattern.lstrip("/")))
        except OSError:
            return []
        return ["/" + str(p.relative_to(self.root)) for p in found]

    def link_name(self, path: str) -> str | None:
        """The last component of a symlink's target (e.g. the driver a device is bound to)."""
        try:
            return Path(os.readlink(self._p(path))).name
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class CpuInfo:
    arch: str  # "x86_64", "aarch64", or "unknown"
    model: str
    cores: int
    flags: tuple[str, ...]  # the inference-relevant subset, in the order of X86/ARM_FLAGS
    # Arm: cores per kind, as listed ("Cortex-A55": 4, "Cortex-A76": 4 on an RK3588).
    clusters: tuple[tuple[str, int], ...] = ()
    big_cores: int = 0  # Arm big.LITTLE: the big cores (0: not big.LITTLE)

    @property
    def has_vnni(self) -> bool:
        return any(f in self.flags for f in ("avx512_vnni", "avx_vnni"))

    @property
    def has_amx(self) -> bool:
        return "amx_int8" in self.flags

    @property
    def has_int8_dot(self) -> bool:
        """A CPU instruction for int8 dot products (x86 VNNI/AMX, Arm SDOT/I8MM)."""
        return self.has_vnni or self.has_amx or "asimddp" in self.flags or "i8mm" in self.flags


@dataclass(frozen=True, slots=True)
class Accelerator:
    kind: str  # intel-npu, intel-gpu, imx-npu, ethos-u, rockchip-npu, hailo, coral
    name: str
    evidence: tuple[str, ...]  # the files that showed it


@dataclass(frozen=True, slots=True)
class HardwareReport:
    cpu: CpuInfo
    soc: tuple[str, ...]  # device-tree compatible strings, most specific first
    board: str | None  # /proc/device-tree/model
    accelerators: tuple[Accelerator, ...]
    delegates: dict[str, str] = field(default_factory=dict)  # library name -> path on disk
    runtime_libs: dict[str, str] = field(default_factory=dict)  # library name -> path

    def has(self, kind: str) -> bool:
        return any(a.kind == kind for a in self.accelerators)


def probe_cpu(fs: RootFS) -> CpuInfo:
    text = fs.read_text("/proc/cpuinfo") or ""
    fields: dict[str, str] = {}
    cores = 0
    parts: dict[str, int] = {}  # CPU part -> cores, in the order listed
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor":
            cores += 1
        elif key == "CPU part":
            parts[value.strip()] = parts.get(value.strip(), 0) + 1
        fields.setdefault(key, value.strip())
    if "flags" in fields:
        arch, present, wanted = "x86_64", set(fields["flags"].split()), X86_FLAGS
    elif "Features" in fields:
        arch, present, wanted = "aarch64", set(fields["Features"].split()), ARM_FLAGS
    else:
        arch, present, wanted = "unknown", set(), ()
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    clusters = tuple((ARM_PARTS.get(p, f"Arm CPU part {p}"), n) for p, n in parts.items())
    if not model and arch == "aarch64":
        model = " + ".join(f"{n}x {name}" for name, n in clusters) or "Arm CPU"
    big = 0
    if len(parts) > 1 and any(p in ARM_LITTLE for p in parts):
        big = sum(n for p, n in parts.items() if p not in ARM_LITTLE)
    return CpuInfo(arch, model, cores, tuple(f for f in wanted if f in present), clusters, big)


def probe_soc(fs: RootFS) -> tuple[tuple[str, ...], str | None]:
    raw = fs.read_text("/proc/device-tree/compatible")
    compatible = tuple(s for s in (raw or "").split("\0") if s.strip())
    model = fs.read_text("/proc/device-tree/model")
    return compatible, (model.strip("\0\n ") or None) if model else None


def _usb_ids(fs: RootFS) -> list[tuple[str, str]]:
    ids = []
    for dev in fs.glob("/sys/bus/usb/devices/*"):
        vendor = (fs.read_text(f"{dev}/idVendor") or "").strip().lower()
        product = (fs.read_text(f"{dev}/idProduct") or "").strip().lower()
        if vendor and product:
            ids.append((f"{vendor}:{product}", dev))
    return ids


def probe_accelerators(fs: RootFS, soc: tuple[str, ...]) -> tuple[Accelerator, ...]:
    found: list[Accelerator] = []

    # Intel NPU (Meteor/Lunar/Arrow Lake): /dev/accel/accelN bound to intel_vpu.
    for node in fs.glob("/dev/accel/accel*"):
        minor = node.rsplit("/", 1)[-1]
        driver = fs.link_name(f"/sys/class/accel/{minor}/device/driver")
        if driver == "intel_vpu" or (driver is None and fs.exists("/sys/module/intel_vpu")):
            found.append(Accelerator("intel-npu", "Intel NPU", (node, "driver intel_vpu")))
    # Intel integrated/discrete GPU for OpenVINO GPU: a DRM render node with vendor 0x8086.
    for node in fs.glob("/sys/class/drm/renderD*"):
        if (fs.read_text(f"{node}/device/vendor") or "").strip() == "0x8086":
            found.append(Accelerator("intel-gpu", "Intel GPU", (node,)))
            break
    # NXP i.MX 8M Plus NPU (VeriSilicon Vivante VIP8000 through galcore).
    imx8mp = any(c.startswith("fsl,imx8mp") for c in soc)
    galcore = [p for p in ("/dev/galcore", "/sys/module/galcore") if fs.exists(p)]
    if galcore and imx8mp:
        found.append(Accelerator("imx-npu", "NXP i.MX 8M Plus NPU (2.3 TOPS)", tuple(galcore)))
    elif galcore:
        found.append(
            Accelerator("imx-npu", "VeriSilicon/Vivante GPU or NPU (galcore)", tuple(galcore))
        )
    # Arm Ethos-U65 NPU of the NXP i.MX 93 (driver ethosu, /dev/ethosu0).
    ethosu = fs.glob("/dev/ethosu*") + [p for p in ("/sys/module/ethosu",) if fs.exists(p)]
    if ethosu:
        where = "NXP i.MX 93" if any(c.startswith("fsl,imx93") for c in soc) else "Arm"
        found.append(Accelerator("ethos-u", f"{where} Ethos-U65 NPU", tuple(ethosu)))
    # Rockchip NPU (RK3588, RK3568, ...).
    rknpu = [
        p for p in ("/dev/rknpu", "/sys/module/rknpu", "/sys/kernel/debug/rknpu") if fs.exists(p)
    ]
    # The vendor kernel's DRM driver: a device-tree node "npu@..." compatible "...-rknpu".
    rknpu += [
        node
        for node in fs.glob("/proc/device-tree/npu@*")
        if "rknpu" in (fs.read_text(f"{node}/compatible") or "")
    ]
    if rknpu:
        chip = next((c.split(",", 1)[1] for c in soc if c.startswith("rockchip,rk")), "Rockchip")
        found.append(Accelerator("rockchip-npu", f"Rockchip NPU ({chip})", tuple(rknpu)))
    # Hailo-8 / Hailo-8L (e.g. the Raspberry Pi AI Kit).
    hailo = fs.glob("/dev/hailo*") + [p for p in ("/sys/module/hailo_pci",) if fs.exists(p)]
    if hailo:
        found.append(Accelerator("hailo", "Hailo-8/8L", tuple(hailo)))
    # Coral Edge TPU: PCIe (/dev/apex_N) or USB (by vendor:product id).
    apex = fs.glob("/dev/apex_*")
    usb = [f"{dev} ({ids})" for ids, dev in _usb_ids(fs) if ids in CORAL_USB_IDS]
    if apex:
        found.append(Accelerator("coral", "Coral Edge TPU (PCIe)", tuple(apex)))
    if usb:
        found.append(Accelerator("coral", "Coral Edge TPU (USB)", tuple(usb)))
    return tuple(found)


def find_libraries(
    fs: RootFS, names: list[str], dirs: tuple[str, ...] = LIB_DIRS
) -> dict[str, str]:
    """Library name -> first path where it exists."""
    found: dict[str, str] = {}
    for name in names:
        for directory in dirs:
            path = f"{directory}/{name}"
            if fs.exists(path):
                found[name] = path
                break
    return found


def probe_hardware(fs: RootFS | None = None) -> HardwareReport:
    """Everything this module can tell about the machine under ``fs`` (``/`` by default)."""
    fs = fs or RootFS()
    soc, board = probe_soc(fs)
    return HardwareReport(
        cpu=probe_cpu(fs),
        soc=soc,
        board=board,
        accelerators=probe_accelerators(fs, soc),
        delegates=find_libraries(fs, list(DELEGATE_LIBS)),
        runtime_libs=find_libraries(fs, list(RUNTIME_LIBS)),
    )


def inference_threads(fs: RootFS | None = None) -> int:
    """Threads for a CPU backend that is not told how many: the big cores of a big.LITTLE
    Arm SoC (an RK3588's four Cortex-A76, not all eight cores: a thread on a little core
    holds every step of a parallel operator back), else 0 (the backend's own default)."""
    return probe_cpu(fs or RootFS()).big_cores
