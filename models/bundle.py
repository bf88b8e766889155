"""Signed model bundles: the model files, a manifest with the sha256 of every file and the
targets the bundle is meant for, and an Ed25519 signature over the manifest.

A bundle is an uncompressed tar whose members are, in this order::

    manifest.json        the manifest (UTF-8 JSON, :class:`BundleManifest`)
    manifest.sig         64 raw bytes: Ed25519 signature over manifest.json's exact bytes
    files/<name>         one member per file listed in the manifest

Verification reads the tar as a stream and never writes a member to disk: the signature is
checked against the pinned public key before the manifest is trusted, then every member is
hashed and compared. Member names are checked before anything else (no absolute paths, no
``..``, no links, devices or duplicates), so a hostile bundle cannot escape the directory it
is installed into.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from edgetally.models.errors import ModelsError
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
FILES_PREFIX = "files/"
MAX_MANIFEST_BYTES = 1 << 20
PRIVATE_KEY_NAME = "fleet.key"
PUBLIC_KEY_NAME = "fleet.pub"

_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
_SHA256 = r"^[0-9a-f]{64}$"
_CHUNK = 1 << 20

Precision = Literal["fp32", "fp16", "int8"]


class BundleError(ModelsError):
    """A bundle or a signing key that cannot be used: the message says why."""


class BundleFormatError(BundleError):
    """Not a well-formed bundle (not a tar, wrong members, unsafe member names)."""


class BundleSignatureError(BundleError):
    """The signature is missing or does not verify with the pinned public key."""


class BundleHashError(BundleError):
    """A file's contents do not match the sha256 (or size) the manifest lists."""


class BundleTargetError(BundleError):
    """The bundle is signed and intact but not meant for this device."""


class BundleOrderError(BundleError):
    """The bundle is signed and intact but not newer than the model installed, and not a
    signed rollback that may replace it."""


_VERSION_PART = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """How bundle versions are ordered: part by part, a run of digits as a number and a run
    of letters as a word (case ignored), separators and trailing zeros ignored. A word where
    the other version ends or has a number marks a pre-release: ``1.0rc1`` < ``1.0`` <
    ``1.0.1`` < ``1.1``, ``2`` < ``10``; ``3``, ``3.0`` and ``3-0`` are the same version."""
    key: list[tuple[int, int, str]] = []
    parts = [
        (2, int(p), "") if p.isdigit() else (0, 0, p.lower())
        for p in _VERSION_PART.findall(version)
    ]
    for part in [*parts, (1, 0, "")]:  # the end ranks between a word and a number
        if part[0] != 2:
            while key and key[-1] == (2, 0, ""):  # 1.0rc1 is 1rc1, 3.0 is 3
                key.pop()
        key.append(part)
    return tuple(key)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as or newer than ``b`` (:func:`version_key`)."""
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleTarget(_Strict):
    """Where a bundle may run: inference backend, numeric precision, device class."""

    backend: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.-]+$")
    precision: Precision
    device_class: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.*-]+$")

    @classmethod
    def parse(cls, text: str) -> BundleTarget:
        """``backend:precision:device_class``, e.g. ``onnxruntime:int8:rpi5``."""
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise BundleError(
                f"target {text!r} must look like backend:precision:device_class "
                "(e.g. onnxruntime:int8:rpi5)"
            )
        try:
            return cls(backend=parts[0], precision=parts[1], device_class=parts[2])  # type: ignore[arg-type]  # pydantic validates it
        except ValidationError as exc:
            raise BundleError(f"target {text!r}: {_first_error(exc)}") from None

    def __str__(self) -> str:
        return f"{self.backend}:{self.precision}:{self.device_class}"

    def accepts(self, device: BundleTarget) -> bool:
        """Whether a device with target ``device`` may install a bundle built for ``self``
        (``*`` as device class means any class)."""
        return (
            self.backend == device.backend
            and self.precision == device.precision
            and self.device_class in ("*", device.device_class)
        )


class HealthBudget(_Strict):
    """What a device's health check holds the new model to before switching to it."""

    latency_ms: float = Field(default=500.0, gt=0)
    max_count_delta: float = Field(
        default=0.25, ge=0, description="largest relative change of counts vs the old model"
    )
    max_power_increase: float = Field(
        default=0.30, ge=0, description="largest relative increase of mean power vs the old model"
    )


class BundleFile(_Strict):
    path: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class BundleManifest(_Strict):
    """The signed description of a bundle (manifest.json)."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$")
    created_at: AwareDatetime
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    targets: tuple[BundleTarget, ...] = Field(min_length=1)
    files: tuple[BundleFile, ...] = Field(min_length=1)
    health: HealthBudget = HealthBudget()
    # A deliberate rollback, signed: this (older) bundle may replace an installed model up to
    # and including version ``rollback_of``. Absent: it only replaces older versions.
    rollback_of: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.+-]+$"
    )

    @model_validator(mode="after")
    def _rollback_goes_back(self) -> BundleManifest:
        if self.rollback_of is not None and compare_versions(self.rollback_of, self.version) <= 0:
            raise ValueError(
                f"rollback_of {self.rollback_of} must be newer than the bundle's version "
                f"{self.version} (a rollback goes back to an older version)"
            )
        return self

    def may_replace(self, installed: str, *, rollback: bool) -> str | None:
        """None when this bundle may replace the installed version ``installed``, else why
        not (one line). Only a newer version may, or, when the fleet's command asks for a
        ``rollback``, a bundle signed as a rollback of a version at or above the installed."""
        if compare_versions(self.version, installed) > 0:
            return None
        what = (
            f"bundle {self.name} {self.version} is not newer than the installed version {installed}"
        )
        if self.rollback_of is None:
            if rollback:
                return (
                    f"{what}, and the command asks for a rollback the bundle is not signed for "
                    "(bundle create --rollback-of)"
                )
            return f"{what}; updates only go forward unless the fleet rolls back"
        if compare_versions(installed, self.rollback_of) > 0:
            return f"{what}; it is signed to roll back versions up to {self.rollback_of} only"
        if not rollback:
            return f"{what}; it is a signed rollback, but the command does not ask for one"
        return None

    def file(self, path: str) -> BundleFile:
        for f in self.files:
            if f.path == path:
                return f
        raise BundleFormatError(f"bundle has no file {path!r}")

    @property
    def model_file(self) -> str:
        """The first ``.onnx`` file, or the first file when none is ONNX."""
        for f in self.files:
            if f.path.endswith(".onnx"):
                return f.path
        return self.files[0].path


Accept = Callable[["BundleManifest"], None]
"""Sees a manifest whose signature held; raises (e.g. :class:`BundleOrderError`) to refuse."""


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """A bundle whose signature and hashes all held."""

    manifest: BundleManifest
    sha256: str  # of the whole bundle file
    size: int


# --------------------------------------------------------------------------- keys


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short fingerprint of a public key: the first 16 hex digits of sha256(raw key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``fleet.key`` (PKCS8 PEM, mode 0600) and ``fleet.pub`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / PRIVATE_KEY_NAME, out_dir / PUBLIC_KEY_NAME
    if not overwrite and (priv_path.exists() or pub_path.exists()):
        raise BundleError(f"{priv_path} or {pub_path} exists already; refusing to overwrite")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    data = _read_small(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    data = _read_small(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"{path}: not an Ed25519 public key")
    return key


def _read_small(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > 64 * 1024:
            raise BundleError(f"{path}: too large to be a {what}")
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- create


def create_bundle(
    model_files: Sequence[Path],
    *,
    private_key: Ed25519PrivateKey,
    out: Path,
    name: str,
    version: str,
    targets: Sequence[BundleTarget],
    health: HealthBudget | None = None,
    created_at: datetime | None = None,
    rollback_of: str | None = None,
) -> BundleManifest:
    """Hash the files, sign the manifest and write the bundle to ``out`` (atomically).
    ``rollback_of``: a deliberate rollback that may replace versions up to this one."""
    if not model_files:
        raise BundleError("a bundle needs at least one model file")
    if not targets:
        raise BundleError("a bundle needs at least one target (--target backend:precision:class)")
    entries: list[BundleFile] = []
    seen: set[str] = set()
    for path in model_files:
        if not path.is_file():
            raise BundleError(f"model file {path} does not exist or is not a file")
        member = path.name
        _check_relpath(member)
        if member in seen:
            raise BundleError(f"two model files are named {member!r}; names must be unique")
        seen.add(member)
        digest, size = _hash_file(path)
        entries.append(BundleFile(path=member, sha256=digest, size=size))
    try:
        manifest = BundleManifest(
            name=name,
            version=version,
            created_at=created_at or datetime.now(UTC),
            key_id=key_id(private_key.public_key()),
            targets=tuple(targets),
            files=tuple(entries),
            health=health or HealthBudget(),
            rollback_of=rollback_of,
        )
    except ValidationError as exc:
        raise BundleError(f"bundle manifest: {_first_error(exc)}") from None
    manifest_bytes = manifest_to_bytes(manifest)
    signature = private_key.sign(manifest_bytes)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST_NAME, manifest_bytes)
            _add_bytes(tar, SIGNATURE_NAME, signature)
            for path, entry in zip(model_files, entries, strict=True):
                info = _tarinfo(FILES_PREFIX + entry.path, entry.size)
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"cannot write bundle {out}: {exc.strerror or exc}") from None
    return manifest


def manifest_to_bytes(manifest: BundleManifest) -> bytes:
    # An absent rollback_of is left out, so a manifest reads the same as before the field.
    leave_out = {"rollback_of"} if manifest.rollback_of is None else None
    data = manifest.model_dump(mode="json", exclude=leave_out)
    return json.dumps(data, indent=2, sort_keys=True).encode()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


# --------------------------------------------------------------------------- verify


def verify_bundle(
    bundle: Path,
    public_key: Ed25519PublicKey,
    *,
    target: BundleTarget | None = None,
) -> VerifiedBundle:
    """Check the signature with the pinned key, every file's hash and (when given) that the
    bundle is meant for ``target``. Nothing is written to disk. Raises :class:`BundleError`."""
    return _scan(bundle, public_key, target=target, dest=None)


def extract_bundle(
    bundle: Path,
    public_key: Ed25519PublicKey,
    dest: Path,
    *,
    target: BundleTarget | None = None,
    accept: Accept | None = None,
) -> VerifiedBundle:
    """Verify and write the files into the new directory ``dest`` in one pass.

    Files are hashed as they are written; on any failure ``dest`` is removed again, so a
    directory that exists after this returns holds exactly the signed files. ``accept`` sees
    the verified manifest before any file is written and raises to refuse the bundle."""
    if dest.exists():
        raise BundleError(f"install directory {dest} exists already")
    dest.mkdir(parents=True)
    try:
        return _scan(bundle, public_key, target=target, dest=dest, accept=accept)
    except BaseException:
        _rmtree(dest)
        raise


def _scan(
    bundle: Path,
    public_key: Ed25519PublicKey,
    *,
    target: BundleTarget | None,
    dest: Path | None,
    accept: Accept | None = None,
) -> VerifiedBundle:
    outer = hashlib.sha256()
    try:
        raw = bundle.open("rb")
    except OSError as exc:
        raise BundleFormatError(f"cannot open bundle {bundle}: {exc.strerror or exc}") from None
    with raw:
        hashing = _HashingReader(raw, outer)
        with _open_stream(bundle, hashing) as tar:
            try:
                manifest = _scan_members(tar, public_key, target=target, dest=dest, accept=accept)
            except (tarfile.TarError, EOFError) as exc:
                raise BundleFormatError(f"{bundle.name}: damaged archive ({exc})") from None
            except OSError as exc:
                raise BundleError(f"{bundle.name}: {exc.strerror or exc}") from None
        # Drain what the tar reader did not consume so the outer hash covers the whole file.
        while hashing.read(_CHUNK):
            pass
    return VerifiedBundle(manifest=manifest, sha256=outer.hexdigest(), size=hashing.count)


def _open_stream(bundle: Path, reader: _HashingReader) -> tarfile.TarFile:
    try:
        # Stream mode ("r|") only reads: typeshed's file object also asks for write, seek, tell.
        return tarfile.open(  # type: ignore[call-overload, no-any-return]  # a read-only stream
            fileobj=reader, mode="r|"
        )
    except (tarfile.TarError, EOFError) as exc:
        raise BundleFormatError(f"{bundle.name}: not a bundle (not a tar archive: {exc})") from None


def _scan_members(
    tar: tarfile.TarFile,
    public_key: Ed25519PublicKey,
    *,
    target: BundleTarget | None,
    dest: Path | None,
    accept: Accept | None = None,
) -> BundleManifest:
    members = iter(tar)
    first = next(members, None)
    if first is None or first.name != MANIFEST_NAME:
        raise BundleFormatError(f"the first member must be {MANIFEST_NAME}")
    manifest_bytes = _read_member(tar, first, MAX_MANIFEST_BYTES)
    second = next(members, None)
    if second is None or second.name != SIGNATURE_NAME:
        raise BundleSignatureError("bundle is not signed: no manifest.sig after manifest.json")
    signature = _read_member(tar, second, 64)
    if len(signature) != 64:
        raise BundleSignatureError("manifest.sig is not a 64-byte Ed25519 signature")
    try:
        public_key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise BundleSignatureError(
            "signature does not verify with the pinned public key "
            f"(pinned key {key_id(public_key)}, bundle claims key {_claimed_key(manifest_bytes)}): "
            "tampered manifest or wrong key"
        ) from None
    try:
        manifest = BundleManifest.model_validate_json(manifest_bytes)
    except ValidationError as exc:
        raise BundleFormatError(f"manifest.json: {_first_error(exc)}") from None
    for f in manifest.files:
        _check_relpath(f.path)
    if target is not None and not any(t.accepts(target) for t in manifest.targets):
        wanted = ", ".join(str(t) for t in manifest.targets)
        raise BundleTargetError(
            f"bundle {manifest.name} {manifest.version} is built for {wanted}, "
            f"not for this device ({target})"
        )
    if accept is not None:
        accept(manifest)
    expected = {f.path: f for f in manifest.files}
    seen: set[str] = set()
    for member in members:
        name = member.name
        if not name.startswith(FILES_PREFIX):
            raise BundleFormatError(f"unexpected member {name!r} in bundle")
        rel = name[len(FILES_PREFIX) :]
        _check_relpath(rel)
        if not member.isreg():
            raise BundleFormatError(f"member {name!r} is not a regular file")
        if rel in seen:
            raise BundleFormatError(f"member {name!r} appears twice")
        entry = expected.get(rel)
        if entry is None:
            raise BundleFormatError(f"member {name!r} is not listed in the manifest")
        seen.add(rel)
        _check_member(tar, member, entry, dest)
    missing = sorted(set(expected) - seen)
    if missing:
        raise BundleHashError(f"bundle lacks file(s) listed in the manifest: {', '.join(missing)}")
    return manifest


def _check_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: BundleFile, dest: Path | None
) -> None:
    if member.size != entry.size:
        raise BundleHashError(
            f"{entry.path}: size {member.size} bytes, the manifest says {entry.size}"
        )
    src = tar.extractfile(member)
    if src is None:  # pragma: no cover - isreg() was checked
        raise BundleFormatError(f"member {member.name!r} cannot be read")
    digest = hashlib.sha256()
    out: IO[bytes] | None = None
    if dest is not None:
        target_path = dest / entry.path
        target_path.parent.mkdir(parents=True, exist_ok=True)
        out = target_path.open("xb")
    try:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    if digest.hexdigest() != entry.sha256:
        raise BundleHashError(
            f"{entry.path}: sha256 {digest.hexdigest()[:16]}... does not match the manifest "
            f"({entry.sha256[:16]}...): the file was altered"
        )


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if not member.isreg():
        raise BundleFormatError(f"member {member.name!r} is not a regular file")
    if member.size > limit:
        raise BundleFormatError(f"member {member.name!r} is too large ({member.size} bytes)")
    fh = tar.extractfile(member)
    if fh is None:  # pragma: no cover - isreg() was checked
        raise BundleFormatError(f"member {member.name!r} cannot be read")
    return fh.read()


def _claimed_key(manifest_bytes: bytes) -> str:
    try:
        value = json.loads(manifest_bytes).get("key_id")
    except (ValueError, AttributeError):
        return "unknown"
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{16}", value) else "unknown"


def _check_relpath(rel: str) -> None:
    """Reject anything that could leave the install directory or is not a plain name."""
    if not rel or rel.startswith("/") or "\\" in rel or "\x00" in rel:
        raise BundleFormatError(f"unsafe file name {rel!r} in bundle")
    for part in rel.split("/"):
        if part in ("", ".", "..") or not _NAME_PART.match(part):
            raise BundleFormatError(f"unsafe file name {rel!r} in bundle")


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: IO[bytes], digest: hashlib._Hash) -> None:
        self._raw = raw
        self._digest = digest
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._digest.update(data)
        self.count += len(data)
        return data


def sha256_file(path: Path) -> str:
    return _hash_file(path)[0]


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    return f"{loc}: {err.get('msg')}" if loc else str(err.get("msg"))


def describe(manifest: BundleManifest) -> Iterable[str]:
    """Human-readable lines for ``bundle verify``."""
    yield f"bundle {manifest.name} {manifest.version} (signed by key {manifest.key_id})"
    yield "targets: " + ", ".join(str(t) for t in manifest.targets)
    if manifest.rollback_of is not None:
        yield f"rollback: may replace versions up to {manifest.rollback_of}"
    for f in manifest.files:
        yield f"  {f.sha256}  {f.size:>10}  {f.path}"
