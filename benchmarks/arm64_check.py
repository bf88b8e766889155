"""The same detections and counts on arm64 as on x86: an arm64 Debian root under qemu-user.

``./run arm64-check`` calls this as root. It

1. builds (once) an arm64 Debian bookworm root with debootstrap under
   ``/var/cache/edgetally/arm64/root`` (``EDGETALLY_ARM64_CACHE`` moves the cache),
2. downloads (once) on this machine the aarch64 wheels of edgetally's ``device`` extra and of
   every runtime that has one (onnxruntime, openvino, ai-edge-litert), at the versions this
   machine's virtualenv runs, into the cache, and installs them with this tree's edgetally
   (a wheel built each run) into a virtualenv inside the root: the root needs no network,
3. decodes the first ``--frames`` frames of Debian's vtest.avi into PNG files that both
   sides read (so the comparison is about inference, not decoding; the arm64 side's own
   decoding is compared too, as a line of its own),
4. runs the counting pipeline (two lines, motion gate off) on each backend here (x86) and
   in the root (emulated Cortex-A76, the core of a Raspberry Pi 5 or an RK3588), and
5. compares them: every box within ``--box-tol`` pixels (and score within ``--score-tol``)
   of its counterpart, the same number of boxes per frame, the same line counts and tracks.

It prints one line per backend and a verdict, and exits 0 only when every backend agrees.

The model is edgetally's default where the backend can run its format; otherwise a zoo model
in a format the backend runs (YOLOX-Nano for onnxruntime, the TFLite SSD-MobileNet for LiteRT),
looked for in EDGETALLY_MODEL_DIRS, the user's model cache and ../shared/models; a backend
without one is skipped with its reason, and the verdict says the check is incomplete.

Under qemu the root's /proc/cpuinfo would be this machine's x86 one (onnxruntime crashes on
it): each run mounts, in a private mount namespace that ends with it, a Cortex-A76
cpuinfo over it and sets QEMU_CPU to the same core.

Usage: python benchmarks/arm64_check.py [--frames N] [--backends onnxruntime,openvino,litert]
       python benchmarks/arm64_check.py probe ...   (one side's run, inside or outside the root)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
SHARED_MODELS = REPO.parent / "shared" / "models"
CACHE = Path(os.environ.get("EDGETALLY_ARM64_CACHE", "/var/cache/edgetally/arm64"))
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
ROOT_PACKAGES = ("python3", "python3-venv", "ca-certificates")
# Inside the root.
OPT = "/opt/edgetally"
VENV = f"{OPT}/venv"
# The emulated core and the /proc/cpuinfo that says it (a Cortex-A76, 4 cores).
QEMU_CPU = "cortex-a76"
A76_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
    "asimdrdm lrcpc dcpop asimddp"
)
# Lines that people in the first 20 frames cross (x86, YOLOX-Nano: 1 in, 2 out).
LINES = ["320,150,320,400", "480,150,480,260", "560,180,560,430"]
BACKENDS = ("onnxruntime", "openvino", "litert")
# Backend -> zoo models to use when the default model's format is not one it runs.
FALLBACK_MODELS = {
    "onnxruntime": ("yolox-nano", "lwpd"),
    "openvino": ("yolox-nano",),
    "litert": ("ssd-mobilenet-v1-coco-quant",),
}
# Runtime packages whose versions the root copies from this machine's virtualenv.
PINNED = ("numpy", "scipy", "opencv-python-headless", "onnxruntime", "openvino", "ai-edge-litert")
TRACK_HIGH = 0.5  # TrackerConfig.high: the first round's detections
# (box pixels, score) a run may move: float models, and full-integer ones (a quantization
# step of a box or score, taken on different integer kernels on x86 and Arm).
# A full-integer box may also move 1% of its longer side (a whole-frame box 6 px).
TOLERANCE = {"float": (1.0, 0.01), "integer": (3.0, 0.03)}
REL_TOL = {"float": 0.0, "integer": 0.01}
RUNTIME_DIST = {"onnxruntime": "onnxruntime", "openvino": "openvino", "litert": "ai-edge-litert"}


class CheckError(Exception):
    """A step of the check that cannot go on (one line, said as it is)."""


# --------------------------------------------------------------------------- one side's run


def probe(args: argparse.Namespace) -> int:
    """Count on the PNG frames in ``--frames`` with one backend and write what it saw."""
    import cv2
    from edgetally.runtime.counting.detectors import load_detector
    from edgetally.runtime.counting.pipeline import build_pipeline, run_count
    from edgetally.runtime.counting.sources import ImageFolderSource, SourceOptions
    from edgetally.runtime.hardware import RootFS, probe_cpu

    config: Any = None
    if args.backend == "openvino":
        from edgetally.runtime.backends.openvino_backend import OpenVinoConfig

        # OpenVINO runs bf16/f16 where the CPU has them: full float on both sides.
        config = OpenVinoConfig(properties={"INFERENCE_PRECISION_HINT": "f32"})
    started = time.perf_counter()
    detector = load_detector(args.model, args.backend, backend_config=config)
    load_s = time.perf_counter() - started
    seen: list[list[list[float]]] = []
    detect = detector.detect

    def recording(image: Any) -> Any:
        found = detect(image)
        seen.append(
            [
                [*map(float, box), float(score), int(cls)]
                for box, score, cls in zip(found.xyxy, found.score, found.class_id, strict=True)
            ]
        )
        return found

    detector.detect = recording  # type: ignore[method-assign]
    pipeline = build_pipeline(detector, LINES, gate=False)
    options = SourceOptions(start=datetime(2026, 1, 1, tzinfo=UTC))
    source = ImageFolderSource.from_folder(Path(args.frames_dir), options, fps=10.0)
    started = time.perf_counter()
    report = run_count(source, pipeline)
    run_s = time.perf_counter() - started
    if args.video:
        # This side's own decoding of the clip, for the host to compare pixel by pixel.
        folder = Path(args.out).with_suffix(".decoded")
        folder.mkdir(exist_ok=True)
        cap = cv2.VideoCapture(args.video)
        for i in range(len(seen)):
            ok, image = cap.read()
            if not ok:
                break
            cv2.imwrite(str(folder / f"{i:04d}.png"), image)
        cap.release()
    versions = {}
    for dist in ("numpy", "opencv-python-headless", RUNTIME_DIST[args.backend]):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "?"
    cpu = probe_cpu(RootFS("/"))
    out = {
        "arch": platform.machine(),
        "cpu": {"arch": cpu.arch, "model": cpu.model, "cores": cpu.cores, "flags": list(cpu.flags)},
        "backend": detector.backend.info.name,
        "device": detector.backend.info.device,
        "model": detector.model.manifest.name,
        "versions": versions,
        "frames": seen,
        "lines": report.lines,
        "tracks": int(getattr(pipeline.tracker, "_next_id", 0)),
        "integer": bool(detector.backend.inputs[0].scale),
        "load_s": round(load_s, 2),
        "s_per_frame": round(run_s / max(len(seen), 1), 3),
    }
    Path(args.out).write_text(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- comparing


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(
    x86: dict[str, Any], arm: dict[str, Any], box_tol: float, score_tol: float, rel_tol: float = 0.0
) -> tuple[bool, str]:
    """Whether the arm64 run agrees with the x86 one, and a line saying how closely.

    Boxes are paired greedily by IoU (>= 0.5) within a frame; a pair agrees when every
    coordinate is within ``box_tol`` pixels (or ``rel_tol`` of the box's longer side, when
    that is more) and the scores within ``score_tol``. A box
    without a counterpart is tolerated only when it is weak (score below the tracker's
    ``high`` plus ``score_tol``: only the tracker's second round sees it, and it may fall
    either side of a threshold or of an SSD's top-k cut); it is reported. The line counts
    and the number of tracks must be the same."""
    problems: list[str] = []
    worst_px = worst_score = 0.0
    boxes = weak = 0
    moved: list[str] = []
    if len(x86["frames"]) != len(arm["frames"]):
        problems.append(f"frames {len(x86['frames'])} vs {len(arm['frames'])}")
    for i, (a_frame, b_frame) in enumerate(zip(x86["frames"], arm["frames"], strict=False)):
        unmatched_b = list(range(len(b_frame)))
        for a in sorted(a_frame, key=lambda d: -d[4]):
            best, best_iou = None, 0.5
            for j in unmatched_b:
                iou = _iou(a, b_frame[j])
                if iou >= best_iou and b_frame[j][5] == a[5]:
                    best, best_iou = j, iou
            if best is None:
                if a[4] < TRACK_HIGH + score_tol:
                    weak += 1
                else:
                    problems.append(f"frame {i}: x86 box score {a[4]:.2f} missing on arm64")
                continue
            unmatched_b.remove(best)
            b = b_frame[best]
            boxes += 1
            diff = max(abs(p - q) for p, q in zip(a[:4], b[:4], strict=True))
            worst_px = max(worst_px, diff)
            allowed = max(box_tol, rel_tol * max(a[2] - a[0], a[3] - a[1]))
            if diff > allowed:
                moved.append(f"frame {i}: a box moved {diff:.2f} px (tolerance {allowed:.2f})")
            worst_score = max(worst_score, abs(a[4] - b[4]))
        for j in unmatched_b:
            if b_frame[j][4] < TRACK_HIGH + score_tol:
                weak += 1
            else:
                problems.append(f"frame {i}: arm64 box score {b_frame[j][4]:.2f} not on x86")
    problems.extend(moved)
    if worst_score > score_tol:
        problems.append(f"a score moved {worst_score:.4f} (tolerance {score_tol})")
    counts_x86 = [(ln["in"], ln["out"]) for ln in x86["lines"]]
    counts_arm = [(ln["in"], ln["out"]) for ln in arm["lines"]]
    if counts_x86 != counts_arm:
        problems.append(f"line counts {counts_x86} vs {counts_arm}")
    if x86["tracks"] != arm["tracks"]:
        problems.append(f"tracks {x86['tracks']} vs {arm['tracks']}")
    counts = " ".join(f"{i}/{o}" for i, o in counts_arm)
    tol = f"{box_tol:g}" + (f" or {100 * rel_tol:g}% of the box" if rel_tol else "")
    line = (
        f"{boxes} boxes paired, max diff {worst_px:.2f} px (tol {tol}), score "
        f"{worst_score:.4f} (tol {score_tol:g})"
        + (f", {weak} weak boxes unpaired" if weak else "")
        + f"; line in/out {counts}, tracks {arm['tracks']}"
    )
    if problems:
        line += "; DIFFERS: " + "; ".join(problems[:3]) + (" ..." if len(problems) > 3 else "")
    return not problems, line


def decoding_line(frames: Path, decoded: Path) -> str:
    """How the arm64 side's own decoding of the clip compares with this machine's."""
    import cv2
    import numpy as np

    same, worst, shares = 0, 0, []
    pngs = sorted(frames.glob("*.png"))
    for png in pngs:
        theirs = cv2.imread(str(decoded / png.name), cv2.IMREAD_COLOR)
        if theirs is None:
            return f"  decoding     the arm64 side decoded fewer frames than {len(pngs)}"
        ours = cv2.imread(str(png), cv2.IMREAD_COLOR)
        diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
        same += int(not diff.any())
        worst = max(worst, int(diff.max()))
        shares.append(float((diff > 0).mean()))
    return (
        f"  decoding     arm64 OpenCV decodes vtest.avi to the same pixels in {same} of "
        f"{len(pngs)} frames (max diff {worst} levels, {100 * max(shares):.1f}% of pixels "
        "at most; the comparison above runs both sides on this machine's frames)"
    )


# --------------------------------------------------------------------------- the root


def sh(
    cmd: list[str], *, log: Path | None = None, env: dict[str, str] | None = None, what: str = ""
) -> str:
    """Run a command; on failure a CheckError with its last lines."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CheckError(f"{what or cmd[0]} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout


def ensure_binfmt() -> None:
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)], what="mounting binfmt_misc")
    if not (misc / "qemu-aarch64").exists():
        sh(["update-binfmts", "--enable", "qemu-aarch64"], what="update-binfmts")
    if "enabled" not in (misc / "qemu-aarch64").read_text():
        raise CheckError(
            "binfmt entry qemu-aarch64 is disabled: update-binfmts --enable qemu-aarch64"
        )


def ensure_root(log: Path) -> Path:
    root = CACHE / "root"
    stamp = root / ".edgetally-root"
    want = f"{SUITE} {' '.join(ROOT_PACKAGES)}\n"
    if stamp.exists() and stamp.read_text() == want:
        return root
    partial = CACHE / "root.partial"
    if partial.exists():
        shutil.rmtree(partial)
    if root.exists():
        shutil.rmtree(root)
    print(
        f"building the arm64 Debian {SUITE} root in {root} (debootstrap, a few minutes)", flush=True
    )
    sh(
        [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            f"--include={','.join(ROOT_PACKAGES)}",
            SUITE,
            str(partial),
            MIRROR,
        ],
        log=log,
        what="debootstrap",
    )
    partial.rename(root)
    stamp.write_text(want)
    return root


def host_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in PINNED:
        with contextlib.suppress(PackageNotFoundError):
            found[dist] = version(dist)
    return found


def aarch64_platforms() -> list[str]:
    # Bookworm has glibc 2.36: every manylinux tag up to it.
    tags = ["manylinux2014_aarch64"] + [f"manylinux_2_{v}_aarch64" for v in range(17, 37)]
    return [arg for tag in tags for arg in ("--platform", tag)]


def clean_env() -> dict[str, str]:
    """No pip settings of this machine (they point at x86 wheel folders), its CA bundle."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(CACHE),
        "LANG": "C.UTF-8",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for key in (
        "SSL_CERT_FILE",
        "PIP_CERT",
        "REQUESTS_CA_BUNDLE",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
    ):
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def ensure_wheels(root: Path, backends: list[str], log: Path) -> dict[str, str]:
    """The aarch64 wheels of the device extra and the backends, at this machine's versions."""
    wheels = root / OPT.lstrip("/") / "wheels"
    pins = host_versions()
    runtimes = [RUNTIME_DIST[b] for b in backends]
    reqs = sorted(
        {
            *(
                f"{d}=={v}"
                for d, v in pins.items()
                if d not in RUNTIME_DIST.values() or d in runtimes
            ),
            *(d for d in runtimes if d not in pins),
        }
    )
    deps = _device_requirements()
    stamp = wheels / ".requirements"
    want = "\n".join([*reqs, *deps]) + "\n"
    if stamp.exists() and stamp.read_text() == want:
        return pins
    print(f"downloading aarch64 wheels into {wheels}: {', '.join(reqs)}", flush=True)
    wheels.mkdir(parents=True, exist_ok=True)
    sh(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--dest",
            str(wheels),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--abi",
            "cp311",
            *aarch64_platforms(),
            "pip",
            *reqs,
            *deps,
        ],
        env=clean_env(),
        log=log,
        what="pip download (aarch64 wheels)",
    )
    stamp.write_text(want)
    return pins


def _device_requirements() -> list[str]:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["device"]]


def build_edgetally_wheel(root: Path, log: Path) -> str:
    dist = root / OPT.lstrip("/") / "dist"
    if dist.exists():
        shutil.rmtree(dist)
    dist.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        # A copy of the tracked tree: no build folders of this checkout in the wheel.
        files = sh(
            ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"], what="git ls-files"
        ).splitlines()
        for name in files:
            src = REPO / name
            if src.is_file():
                dst = Path(tmp) / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        # A pure-Python wheel, built as this machine builds (its pip settings, an isolated
        # build with the setuptools pyproject.toml asks for: a new venv's own is too old).
        sh(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), tmp],
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            log=log,
            what="building the edgetally wheel",
        )
    (wheel,) = dist.glob("edgetally-*.whl")
    return f"{OPT}/dist/{wheel.name}"


def in_root(root: Path, argv: list[str], *, log: Path | None = None, what: str = "") -> str:
    """Run ``argv`` in the root, emulated, with a clean environment and an arm64 cpuinfo,
    in a private mount namespace (its mounts end with it)."""
    cpuinfo = CACHE / "cpuinfo-a76"
    cpuinfo.write_text(
        "".join(
            f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {A76_FEATURES}\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
            "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
            for i in range(4)
        )
    )
    env = [
        "env",
        "-i",
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        f"QEMU_CPU={QEMU_CPU}",
        "PYTHONDONTWRITEBYTECODE=1",
        "PIP_NO_INDEX=1",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
    ]
    script = (
        f'set -e; r="{root}"; mount -t proc proc "$r/proc"; '
        f'mount --bind "{cpuinfo}" "$r/proc/cpuinfo"; mount --rbind /dev "$r/dev"; '
        f'mount -t tmpfs tmpfs "$r/tmp"; mount -t sysfs -o ro sysfs "$r/sys"; '
        # (OpenVINO's hwloc crashes without a CPU topology in /sys.)
        'exec chroot "$r" "$@"'
    )
    return sh(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *env, *argv],
        log=log,
        what=what or argv[0],
    )


def ensure_venv(
    root: Path, edgetally_wheel: str, backends: list[str], pins: dict[str, str], log: Path
) -> None:
    stamp = root / VENV.lstrip("/") / ".edgetally-deps"
    runtimes = [RUNTIME_DIST[b] for b in backends]
    want = json.dumps([sorted(runtimes), pins, _device_requirements()]) + "\n"
    pip = [
        f"{VENV}/bin/python",
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--find-links",
        f"{OPT}/wheels",
    ]
    if not (stamp.exists() and stamp.read_text() == want):
        print(
            "installing edgetally[device] and the runtimes into the root's virtualenv "
            "(emulated pip, a few minutes)",
            flush=True,
        )
        if (root / VENV.lstrip("/")).exists():
            shutil.rmtree(root / VENV.lstrip("/"))
        in_root(root, ["python3", "-m", "venv", VENV], log=log, what="python3 -m venv")
        in_root(root, [*pip, "--upgrade", "pip"], log=log, what="pip install pip")
        pinned = [
            f"{d}=={v}" for d, v in pins.items() if d not in RUNTIME_DIST.values() or d in runtimes
        ]
        extra = [d for d in runtimes if d not in pins]
        in_root(
            root,
            [*pip, f"edgetally[device] @ file://{edgetally_wheel}", *pinned, *extra],
            log=log,
            what="pip install (root)",
        )
        stamp.write_text(want)
    else:
        in_root(
            root,
            [*pip, "--no-deps", "--force-reinstall", edgetally_wheel],
            log=log,
            what="pip install edgetally (root)",
        )


# --------------------------------------------------------------------------- models


def default_model() -> str:
    from edgetally.runtime.config import DeviceConfig

    return str(DeviceConfig.model_fields["model"].default)


def plan_models(backends: list[str]) -> dict[str, tuple[str, Path] | str]:
    """Backend -> (zoo name, file) to run, or the reason it is skipped."""
    if SHARED_MODELS.is_dir():
        dirs = os.environ.get("EDGETALLY_MODEL_DIRS", "")
        os.environ["EDGETALLY_MODEL_DIRS"] = os.pathsep.join(
            p for p in (dirs, str(SHARED_MODELS)) if p
        )
    from edgetally.models.zoo import locate, zoo
    from edgetally.runtime.backends.registry import BACKENDS as REGISTRY

    manifests = zoo()
    default = default_model()
    plan: dict[str, tuple[str, Path] | str] = {}
    for backend in backends:
        names = [default] if manifests[default].format in REGISTRY[backend].formats else []
        names += [n for n in FALLBACK_MODELS[backend] if n not in names]
        reasons = []
        for name in names:
            path = locate(manifests[name])
            if path is not None:
                plan[backend] = (name, path)
                break
            reasons.append(f"{name} ({manifests[name].file}) not in a model directory")
        else:
            why = "; ".join(reasons)
            if default not in names:
                why = (
                    f"the default {default} is {manifests[default].format}, which "
                    f"{backend} does not run; {why}"
                )
            plan[backend] = why
    return plan


# --------------------------------------------------------------------------- the check


def doctor_line(root: Path, log: Path) -> str:
    """What ``edgetally doctor`` sees and recommends on the emulated arm64 device."""
    try:
        out = in_root(
            root,
            [f"{VENV}/bin/edgetally", "doctor", "--json"],
            log=log,
            what="edgetally doctor (arm64)",
        )
        data = json.loads(out)
    except (CheckError, ValueError) as exc:
        return f"  doctor       FAILED on arm64: {exc}"
    cpu, rec = data["hardware"]["cpu"], data["recommendation"]
    return (
        f"  doctor       arm64 sees {cpu['model']} ({cpu['arch']}, {cpu['cores']} cores, "
        f"{' '.join(cpu['flags'])}); recommends {rec['cli_args']} {rec['precision']}"
    )


def extract_frames(video: Path, count: int, folder: Path) -> None:
    import cv2

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    cap = cv2.VideoCapture(str(video))
    for i in range(count):
        ok, image = cap.read()
        if not ok:
            raise CheckError(f"{video} has only {i} frames (asked for {count})")
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    cap.release()


def check(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise CheckError("run as root (debootstrap, chroot and mounts): sudo ./run arm64-check")
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            raise CheckError(f"{tool} is missing: ./run arm64-check installs Debian's packages")
    if not VTEST.is_file():
        raise CheckError(f"{VTEST} is missing: install Debian's opencv-doc (./run install does)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise CheckError(f"unknown backend {', '.join(unknown)}: expected {', '.join(BACKENDS)}")
    started = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    log = CACHE / "last-run.log"
    log.write_text("")
    ensure_binfmt()
    root = ensure_root(log)
    t_root = time.perf_counter()
    pins = ensure_wheels(root, backends, log)
    wheel = build_edgetally_wheel(root, log)
    ensure_venv(root, wheel, backends, pins, log)
    t_venv = time.perf_counter()
    print(doctor_line(root, log), flush=True)
    work = root / OPT.lstrip("/") / "check"
    frames = work / "frames"
    extract_frames(VTEST, args.frames, frames)
    shutil.copy2(VTEST, work / "vtest.avi")
    shutil.copy2(Path(__file__), work / "arm64_check.py")
    (work / "models").mkdir(exist_ok=True)
    plan = plan_models(backends)
    print(
        f"arm64 check: {args.frames} frames of vtest.avi, default model {default_model()}, "
        f"emulated {QEMU_CPU}; every confident box paired within the tolerance, the same "
        f"line counts and tracks",
        flush=True,
    )
    results: dict[str, bool | None] = {}
    decode_line = ""
    for backend in backends:
        entry = plan[backend]
        if isinstance(entry, str):
            print(f"  {backend:<12} SKIPPED: {entry}", flush=True)
            results[backend] = None
            continue
        name, path = entry
        shutil.copy2(path, work / "models" / path.name)
        x86_out, arm_out = work / f"{backend}.x86.json", work / f"{backend}.arm64.json"
        common = ["probe", "--backend", backend, "--frames-dir"]
        sh(
            [
                sys.executable,
                str(Path(__file__)),
                *common,
                str(frames),
                "--model",
                str(path),
                "--out",
                str(x86_out),
            ],
            log=log,
            what=f"x86 {backend} run",
        )
        t0 = time.perf_counter()
        try:
            in_root(
                root,
                [
                    f"{VENV}/bin/python",
                    f"{OPT}/check/arm64_check.py",
                    *common,
                    f"{OPT}/check/frames",
                    "--model",
                    f"{OPT}/check/models/{path.name}",
                    "--out",
                    f"{OPT}/check/{arm_out.name}",
                    "--video",
                    f"{OPT}/check/vtest.avi",
                ],
                log=log,
                what=f"arm64 {backend} run",
            )
        except CheckError as exc:
            print(f"  {backend:<12} FAILED on arm64: {exc} (log: {log})", flush=True)
            results[backend] = False
            continue
        arm_s = time.perf_counter() - t0
        x86, arm = json.loads(x86_out.read_text()), json.loads(arm_out.read_text())
        kind = "integer" if arm["integer"] else "float"
        box_tol, score_tol = TOLERANCE[kind]
        rel_tol = REL_TOL[kind]
        if args.box_tol is not None:
            box_tol = args.box_tol
        if args.score_tol is not None:
            score_tol = args.score_tol
        ok, line = compare(x86, arm, box_tol, score_tol, rel_tol)
        results[backend] = ok
        kind = "full-integer" if arm["integer"] else "float"
        print(
            f"  {backend:<12} {'AGREES' if ok else 'DIFFERS'}  {name} ({kind}) on arm64 "
            f"{arm['backend']} {arm['versions'].get(RUNTIME_DIST[backend], '?')} "
            f"{arm['device']}, {arm['s_per_frame']:.2f} s/frame ({arm_s:.0f} s with start), "
            f"x86 {x86['s_per_frame'] * 1000:.0f} ms/frame: {line}",
            flush=True,
        )
        decoded = arm_out.with_suffix(".decoded")
        if not decode_line and decoded.is_dir():
            decode_line = decoding_line(frames, decoded)
    if decode_line:
        print(decode_line)
    total = time.perf_counter() - started
    print(
        f"  time         root {t_root - started:.0f} s, wheels and virtualenv "
        f"{t_venv - t_root:.0f} s, runs {total - (t_venv - started):.0f} s, "
        f"{total:.0f} s in all (cache {CACHE})"
    )
    failed = [b for b, ok in results.items() if ok is False]
    skipped = [b for b, ok in results.items() if ok is None]
    if failed:
        print(f"verdict: arm64 DIFFERS from x86 on {', '.join(failed)}")
        return 1
    if skipped:
        print(
            f"verdict: INCOMPLETE: arm64 agrees with x86 on "
            f"{', '.join(b for b, ok in results.items() if ok) or 'no backend'}, "
            f"{', '.join(skipped)} skipped (a model file is missing: EDGETALLY_MODEL_DIRS)"
        )
        return 1
    print(f"verdict: arm64 agrees with x86 on every backend ({', '.join(backends)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("probe", help="one side's run (x86 here, arm64 in the root)")
    p.add_argument("--backend", required=True, choices=BACKENDS)
    p.add_argument("--model", required=True)
    p.add_argument("--frames-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--video")
    parser.add_argument("--frames", type=int, default=20, help="frames of vtest.avi (20)")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--box-tol",
        type=float,
        default=None,
        help="pixels a box corner may move (1 for float models, 3 for full-integer ones)",
    )
    parser.add_argument(
        "--score-tol",
        type=float,
        default=None,
        help="how far a score may move (0.01 float, 0.03 full-integer)",
    )
    args = parser.parse_args(argv)
    try:
        if args.cmd == "probe":
            return probe(args)
        if args.frames < 2:
            raise CheckError("--frames must be at least 2")
        return check(args)
    except CheckError as exc:
        print(f"arm64-check: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
