"""Signed bundles: create, verify, and refuse anything that does not hold."""

from __future__ import annotations

import functools
import io
import itertools
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from edgetally.models.bundle import (
    BundleError,
    BundleFormatError,
    BundleHashError,
    BundleSignatureError,
    BundleTarget,
    create_bundle,
    extract_bundle,
    generate_keypair,
    load_private_key,
    load_public_key,
    sha256_file,
    verify_bundle,
)

TARGET = BundleTarget.parse("onnxruntime:int8:rpi5")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_keypair(tmp_path / "keys")


@pytest.fixture
def bundle(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    model = tmp_path / "det.onnx"
    model.write_bytes(bytes(range(256)) * 64)
    labels = tmp_path / "labels.txt"
    labels.write_text("person\n")
    out = tmp_path / "det.bundle"
    create_bundle(
        [model, labels],
        private_key=load_private_key(keys[0]),
        out=out,
        name="det",
        version="2",
        targets=[TARGET],
    )
    return out


def test_roundtrip_verifies_and_extracts(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    pub = load_public_key(keys[1])
    verified = verify_bundle(bundle, pub, target=TARGET)
    assert verified.manifest.name == "det"
    assert [f.path for f in verified.manifest.files] == ["det.onnx", "labels.txt"]
    assert verified.sha256 == sha256_file(bundle)
    assert verified.size == bundle.stat().st_size
    dest = tmp_path / "slot"
    extract_bundle(bundle, pub, dest, target=TARGET)
    assert (dest / "det.onnx").read_bytes() == bytes(range(256)) * 64
    assert sorted(p.name for p in dest.iterdir()) == ["det.onnx", "labels.txt"]


def test_private_key_is_not_world_readable(keys: tuple[Path, Path]) -> None:
    assert keys[0].stat().st_mode & 0o077 == 0


def _flip_byte_in_member(bundle: Path, member_name: str) -> None:
    data = bytearray(bundle.read_bytes())
    with tarfile.open(bundle) as tar:
        info = tar.getmember(member_name)
    data[info.offset_data + min(10, info.size - 1)] ^= 0x01
    bundle.write_bytes(bytes(data))


def test_flipped_byte_in_a_model_file_is_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    _flip_byte_in_member(bundle, "files/det.onnx")
    with pytest.raises(BundleHashError, match=r"det\.onnx.*does not match"):
        verify_bundle(bundle, load_public_key(keys[1]))


def test_flipped_byte_in_the_manifest_is_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    _flip_byte_in_member(bundle, "manifest.json")
    with pytest.raises(BundleSignatureError, match="does not verify"):
        verify_bundle(bundle, load_public_key(keys[1]))


def test_failed_extract_leaves_no_directory(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    _flip_byte_in_member(bundle, "files/labels.txt")
    dest = tmp_path / "slot"
    with pytest.raises(BundleHashError):
        extract_bundle(bundle, load_public_key(keys[1]), dest)
    assert not dest.exists()


def test_wrong_key_is_refused(bundle: Path, tmp_path: Path) -> None:
    _, other_pub = generate_keypair(tmp_path / "other")
    with pytest.raises(BundleSignatureError, match="pinned key"):
        verify_bundle(bundle, load_public_key(other_pub))


def test_other_target_is_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    from edgetally.models.bundle import BundleTargetError

    pub = load_public_key(keys[1])
    for other in ("openvino:int8:rpi5", "onnxruntime:fp32:rpi5", "onnxruntime:int8:jetson"):
        with pytest.raises(BundleTargetError, match="not for this device"):
            verify_bundle(bundle, pub, target=BundleTarget.parse(other))


def test_wildcard_device_class(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    out = tmp_path / "b.bundle"
    create_bundle(
        [model],
        private_key=load_private_key(keys[0]),
        out=out,
        name="m",
        version="1",
        targets=[BundleTarget.parse("onnxruntime:fp32:*")],
    )
    verify_bundle(out, load_public_key(keys[1]), target=BundleTarget.parse("onnxruntime:fp32:x86"))


Edit = Callable[[tarfile.TarInfo, bytes], Sequence[tuple[tarfile.TarInfo, bytes | None]]]


def _read_member(tar: tarfile.TarFile, member: str | tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(member)
    assert fh is not None, f"{member}: not a regular file"
    return fh.read()


def _rewrite(bundle: Path, out: Path, edit: Edit) -> None:
    """Copy the bundle's members through ``edit(name, data) -> list[(TarInfo, data)]``."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            data = _read_member(src, m)
            for info, payload in edit(m, data):
                dst.addfile(info, io.BytesIO(payload) if payload is not None else None)


def test_unsigned_bundle_is_refused(bundle: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "unsigned.bundle"
    _rewrite(bundle, out, lambda m, d: [] if m.name == "manifest.sig" else [(m, d)])
    with pytest.raises(BundleSignatureError, match="not signed"):
        verify_bundle(out, load_public_key(keys[1]))


@pytest.mark.parametrize(
    "evil", ["files/../../etc/passwd", "/etc/passwd", "files/a/../../x", "files/.hidden/.."]
)
def test_path_traversal_member_is_refused(
    bundle: Path, keys: tuple[Path, Path], tmp_path: Path, evil: str
) -> None:
    def add_evil(m: tarfile.TarInfo, d: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
        if m.name != "files/labels.txt":
            return [(m, d)]
        bad = tarfile.TarInfo(evil)
        bad.size = 3
        return [(m, d), (bad, b"pwn")]

    out = tmp_path / "evil.bundle"
    _rewrite(bundle, out, add_evil)
    dest = tmp_path / "slot"
    with pytest.raises(BundleFormatError):
        extract_bundle(out, load_public_key(keys[1]), dest)
    assert not dest.exists()
    assert not (tmp_path / "x").exists()


def test_symlink_member_is_refused(bundle: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    def add_link(m: tarfile.TarInfo, d: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
        if m.name != "files/labels.txt":
            return [(m, d)]
        link = tarfile.TarInfo("files/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        return [(m, d), (link, None)]

    out = tmp_path / "link.bundle"
    _rewrite(bundle, out, add_link)
    with pytest.raises(BundleFormatError, match="not a regular file"):
        verify_bundle(out, load_public_key(keys[1]))


def test_not_a_tar_and_missing_file(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"hello world" * 100)
    with pytest.raises(BundleFormatError, match="not a"):
        verify_bundle(junk, load_public_key(keys[1]))
    with pytest.raises(BundleFormatError, match="cannot open"):
        verify_bundle(tmp_path / "nope.bundle", load_public_key(keys[1]))


def test_truncated_bundle_is_refused(bundle: Path, keys: tuple[Path, Path]) -> None:
    bundle.write_bytes(bundle.read_bytes()[:3000])
    with pytest.raises(BundleError):
        verify_bundle(bundle, load_public_key(keys[1]))


def test_bad_target_strings() -> None:
    for bad in ("onnxruntime", "onnxruntime:int4:rpi5", "ONNX:int8:x", "a:int8:"):
        with pytest.raises(BundleError):
            BundleTarget.parse(bad)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgetally", *args], capture_output=True, text=True, check=False
    )


def test_cli_keygen_create_verify(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    assert _cli("bundle", "keygen", "--out", str(keys)).returncode == 0
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07" * 100)
    out = tmp_path / "m.bundle"
    r = _cli(
        "bundle",
        "create",
        str(model),
        "--key",
        str(keys / "fleet.key"),
        "--out",
        str(out),
        "--target",
        "onnxruntime:fp32:*",
        "--version",
        "3",
    )
    assert r.returncode == 0, r.stderr
    r = _cli("bundle", "verify", str(out), "--pubkey", str(keys / "fleet.pub"))
    assert r.returncode == 0, r.stderr
    assert "m 3" in r.stdout
    _flip_byte_in_member(out, "files/m.onnx")
    r = _cli("bundle", "verify", str(out), "--pubkey", str(keys / "fleet.pub"))
    assert r.returncode == 1
    assert r.stderr.startswith("edgetally: error: m.onnx: sha256")
    assert "Traceback" not in r.stderr
    # bad input: a public key where the private key belongs, a bad target
    r = _cli(
        "bundle",
        "create",
        str(model),
        "--key",
        str(keys / "fleet.pub"),
        "--out",
        str(out),
        "--target",
        "onnxruntime:fp32:*",
    )
    assert r.returncode == 1 and "private key" in r.stderr and "Traceback" not in r.stderr
    r = _cli("bundle", "verify", str(out), "--pubkey", str(keys / "fleet.pub"), "--target", "x")
    assert r.returncode == 1 and "backend:precision:device_class" in r.stderr


def test_version_order() -> None:
    from edgetally.models.bundle import compare_versions

    ascending = ["0.9", "1.0rc1", "1", "1.0.1", "1.1", "2", "10", "10.0.1-beta", "10.0.1"]
    for older, newer in itertools.pairwise(ascending):
        assert compare_versions(older, newer) == -1, (older, newer)
        assert compare_versions(newer, older) == 1, (older, newer)
    assert compare_versions("3", "3.0") == compare_versions("3.0", "3-0") == 0
    assert compare_versions("1.0.0rc1", "1rc1") == 0
    assert compare_versions("V2", "v2") == 0


def test_a_signed_rollback_and_what_it_may_replace(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    from edgetally.models.bundle import BundleManifest

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    make = functools.partial(
        create_bundle, private_key=load_private_key(keys[0]), name="m", targets=[TARGET]
    )
    plain = make([model], out=tmp_path / "plain.bundle", version="1")
    with tarfile.open(tmp_path / "plain.bundle") as tar:  # manifests read as before the field
        assert b"rollback_of" not in _read_member(tar, "manifest.json")
    back = make([model], out=tmp_path / "back.bundle", version="1", rollback_of="3")
    verified = verify_bundle(tmp_path / "back.bundle", load_public_key(keys[1]))
    assert verified.manifest.rollback_of == "3"

    assert plain.may_replace("0.9", rollback=False) is None  # newer: always
    assert "updates only go forward" in str(plain.may_replace("1", rollback=False))
    assert "not signed for" in str(plain.may_replace("3", rollback=True))
    assert back.may_replace("3", rollback=True) is None
    assert back.may_replace("2", rollback=True) is None
    assert "does not ask for one" in str(back.may_replace("3", rollback=False))
    assert "up to 3 only" in str(back.may_replace("4", rollback=True))

    with pytest.raises(BundleError, match="rollback_of 1 must be newer"):
        make([model], out=tmp_path / "x.bundle", version="2", rollback_of="1")
    with pytest.raises(ValueError, match="must be newer"):
        BundleManifest.model_validate(back.model_dump() | {"rollback_of": "1"})


def test_cli_create_a_rollback_bundle(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07" * 10)
    out = tmp_path / "m-1r.bundle"
    r = _cli(
        "bundle",
        "create",
        str(model),
        "--key",
        str(keys[0]),
        "--out",
        str(out),
        "--target",
        "onnxruntime:fp32:*",
        "--version",
        "1",
        "--rollback-of",
        "3",
    )
    assert r.returncode == 0, r.stderr
    assert "rollback: may replace versions up to 3" in r.stdout
    r = _cli(
        "bundle",
        "create",
        str(model),
        "--key",
        str(keys[0]),
        "--out",
        str(out),
        "--target",
        "onnxruntime:fp32:*",
        "--version",
        "4",
        "--rollback-of",
        "3",
    )
    assert r.returncode == 1 and "must be newer" in r.stderr and "Traceback" not in r.stderr
