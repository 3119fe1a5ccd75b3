"""Signed checkpoints of the hash chain ("anchors"), kept outside the database.

A hash chain alone cannot show that its end was cut off together with the recorded tip: the shorter
chain is still a valid chain. An anchor is a statement "this ledger had entry ``seq`` with hash
``entry_hash`` at ``anchored_at``", signed with an Ed25519 key whose private half the database never
sees. ``greenflow ledger verify --anchor FILE`` fails when the chain no longer holds an anchored entry
with that hash, and verifies incrementally from the newest anchor.

The anchor file is JSON::

    {"format": "greenflow-anchor/1",
     "checkpoint": {"ledger_id": …, "seq": …, "entry_hash": …, "anchored_at": …, "key_id": …},
     "signature": "<base64 Ed25519 signature of the checkpoint's canonical JSON>",
     "public_key": "<base64 raw public key>"}

``ledger_id`` is the hash of the chain's first entry: it tells one ledger from another without naming
its database (whose URL may carry a password).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from greenflow.clock import parse_time, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import canonical_json
from greenflow.ledger.models import EntryRow, HeadRow

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from greenflow.ledger.store import Ledger
    from greenflow.ledger.verify import VerificationReport

FORMAT = "greenflow-anchor/1"
KEY_ENV = "GREENFLOW_ANCHOR_KEY"
_HASH_LENGTH = 64
_KEY_FIX = "give an Ed25519 key as PEM or base64 of its 32 raw bytes (make one with `greenflow ledger keygen`)"


@dataclass(frozen=True)
class Checkpoint:
    """What an anchor states: the ledger had entry ``seq`` with hash ``entry_hash`` at ``anchored_at``."""

    ledger_id: str
    seq: int
    entry_hash: str
    anchored_at: datetime
    key_id: str

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers (canonical JSON, format name included)."""
        return canonical_json({"format": FORMAT, **self.to_dict()}).encode()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "ledger_id": self.ledger_id,
            "seq": self.seq,
            "entry_hash": self.entry_hash,
            "anchored_at": self.anchored_at.isoformat().replace("+00:00", "Z"),
            "key_id": self.key_id,
        }


@dataclass(frozen=True)
class Anchor:
    """A signed checkpoint and where it was read from (``source``, for messages)."""

    checkpoint: Checkpoint
    signature: str
    public_key: str
    source: str = "<memory>"

    def to_dict(self) -> dict[str, Any]:
        """The anchor file's content."""
        return {
            "format": FORMAT,
            "checkpoint": self.checkpoint.to_dict(),
            "signature": self.signature,
            "public_key": self.public_key,
        }

    def to_json(self) -> str:
        """The anchor file's text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


# -- keys -------------------------------------------------------------------------------------------
def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key: ``ed25519:`` + the first 16 hex digits of SHA-256(raw key)."""
    return "ed25519:" + hashlib.sha256(_raw_public(public_key)).hexdigest()[:16]


def generate_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def private_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM (store it with mode 0600, outside the database)."""
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """The public key as SubjectPublicKeyInfo PEM (what ``openssl pkey -pubout`` writes)."""
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(text: str | bytes, source: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM or base64 of its 32 raw bytes; ``source`` names where it came from.

    The key's bytes never appear in an error message.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = text.encode() if isinstance(text, str) else text
    data = data.strip()
    if not data:
        raise InvalidInput(f"the anchor key from {source} is empty", fix=_KEY_FIX)
    if data.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise InvalidInput(
                f"the anchor key from {source} is not an unencrypted PEM private key", fix=_KEY_FIX
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidInput(f"the anchor key from {source} is a {type(key).__name__}, not Ed25519", fix=_KEY_FIX)
        return key
    raw = _b64(data, f"the anchor key from {source}")
    if len(raw) != 32:
        raise InvalidInput(f"the anchor key from {source} has {len(raw)} bytes, an Ed25519 key has 32", fix=_KEY_FIX)
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(text: str | bytes, source: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM or base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    data = (text.encode() if isinstance(text, str) else text).strip()
    if data.startswith(b"-----BEGIN"):
        try:
            key: Any = serialization.load_pem_public_key(data)
        except ValueError:
            # A private key given where the public one is expected: its public half is what we need.
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError):
                raise InvalidInput(f"the public key from {source} is not a PEM key", fix=_KEY_FIX) from None
        if isinstance(key, Ed25519PrivateKey):
            key = key.public_key()
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidInput(f"the public key from {source} is a {type(key).__name__}, not Ed25519", fix=_KEY_FIX)
        return key
    raw = _b64(data, f"the public key from {source}")
    if len(raw) != 32:
        raise InvalidInput(f"the public key from {source} has {len(raw)} bytes, an Ed25519 key has 32", fix=_KEY_FIX)
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_from_file(path: str | Path) -> Ed25519PrivateKey:
    """The private key stored in ``path``."""
    return load_private_key(_read_key_file(path, "anchor key"), f"file {str(path)!r}")


def private_key_from_env(environ: dict[str, str] | None = None) -> Ed25519PrivateKey | None:
    """The private key in ``$GREENFLOW_ANCHOR_KEY`` (PEM or base64 raw), or ``None`` when unset."""
    value = (os.environ if environ is None else environ).get(KEY_ENV)
    if value is None or not value.strip():
        return None
    return load_private_key(value, f"${KEY_ENV}")


def public_key_from_file(path: str | Path) -> Ed25519PublicKey:
    """The public key stored in ``path`` (a private key file works too: its public half is used)."""
    return load_public_key(_read_key_file(path, "public key"), f"file {str(path)!r}")


def _read_key_file(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the {what} file {str(path)!r}: {exc.strerror}", fix="give a readable file"
        ) from None


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _b64(data: bytes, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is neither PEM nor base64", fix=_KEY_FIX) from None


# -- making and reading anchors ---------------------------------------------------------------------
def ledger_identity(ledger: Ledger) -> str | None:
    """The hash of the chain's first entry (``None`` for an empty ledger)."""
    with ledger.read() as session:
        return session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == 1)).scalar_one_or_none()


def make_anchor(ledger: Ledger, private_key: Ed25519PrivateKey, *, now: datetime | None = None) -> Anchor:
    """Sign the chain's current tip (read with the first entry in one transaction)."""
    with ledger.read() as session:
        head = session.execute(select(HeadRow.seq, HeadRow.entry_hash).where(HeadRow.id == 1)).one()
        first = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == 1)).scalar_one_or_none()
    if head.seq == 0 or first is None:
        raise InvalidInput("the ledger has no entries to anchor", fix="anchor once tasks have recorded entries")
    public_key = private_key.public_key()
    checkpoint = Checkpoint(
        ledger_id=first,
        seq=int(head.seq),
        entry_hash=head.entry_hash,
        anchored_at=now or utcnow(),
        key_id=key_id(public_key),
    )
    signature = private_key.sign(checkpoint.signed_bytes())
    return Anchor(
        checkpoint=checkpoint,
        signature=base64.b64encode(signature).decode(),
        public_key=base64.b64encode(_raw_public(public_key)).decode(),
    )


def write_anchor(anchor: Anchor, directory: str | Path) -> Path:
    """Write ``anchor`` into ``directory`` as ``anchor-<seq>-<time>.json`` (never over another file)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = anchor.checkpoint.anchored_at.strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"anchor-{anchor.checkpoint.seq:012d}-{stamp}.json"
    with open(path, "x", encoding="utf-8") as handle:
        handle.write(anchor.to_json())
    return path


def anchor_files(paths: list[str] | list[Path]) -> list[Path]:
    """The anchor files named: files as given, directories as their ``*.json`` files."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(path.glob("*.json"))
            if not inside:
                raise InvalidInput(f"the anchor directory {str(path)!r} holds no *.json anchor", fix="anchor first")
            found.extend(inside)
        else:
            found.append(path)
    return found


def read_anchor(path: str | Path, public_key: Ed25519PublicKey | None = None) -> Anchor:
    """Read and check an anchor file: well-formed, signed by ``public_key`` (or by the key it embeds).

    With no ``public_key`` the embedded key is used after checking that its fingerprint is the signed
    ``key_id``: that proves the file is intact, not who made it; pass the public key to prove that.
    """
    source = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"cannot read anchor {source!r}: {exc.strerror}", fix="give an anchor file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(
            f"anchor {source!r} is not JSON", fix="give a file `greenflow ledger anchor` wrote"
        ) from None
    checkpoint = _parse_checkpoint(document, source)
    signature = _b64(str(document.get("signature", "")).encode(), f"the signature of anchor {source!r}")
    embedded = document.get("public_key")
    if public_key is None:
        if not isinstance(embedded, str):
            raise InvalidInput(f"anchor {source!r} embeds no public key", fix="pass --public-key")
        public_key = load_public_key(embedded, f"anchor {source!r}")
        if key_id(public_key) != checkpoint.key_id:
            raise InvalidInput(
                f"anchor {source!r}: its embedded public key ({key_id(public_key)}) is not the signer "
                f"{checkpoint.key_id} it names",
                fix="the file was altered; use an intact copy or pass --public-key",
            )
    elif key_id(public_key) != checkpoint.key_id:
        raise InvalidInput(
            f"anchor {source!r} was signed by key {checkpoint.key_id}, not by the given key {key_id(public_key)}",
            fix="pass the public key of the key that made the anchor",
        )
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, checkpoint.signed_bytes())
    except InvalidSignature:
        raise InvalidInput(
            f"anchor {source!r}: the signature does not match its checkpoint (key {checkpoint.key_id})",
            fix="the anchor was altered or made with another key; use an intact copy",
        ) from None
    return Anchor(checkpoint, str(document["signature"]), base64.b64encode(_raw_public(public_key)).decode(), source)


def _parse_checkpoint(document: Any, source: str) -> Checkpoint:
    fix = "give a file `greenflow ledger anchor` wrote"
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInput(f"anchor {source!r} is not a {FORMAT} document", fix=fix)
    body = document.get("checkpoint")
    if not isinstance(body, dict):
        raise InvalidInput(f"anchor {source!r} has no checkpoint", fix=fix)
    seq, entry_hash, ledger_id, signer = (body.get(k) for k in ("seq", "entry_hash", "ledger_id", "key_id"))
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**63:
        raise InvalidInput(f"anchor {source!r}: seq={seq!r} is not a positive whole number", fix=fix)
    for name, value in (("entry_hash", entry_hash), ("ledger_id", ledger_id)):
        if not (isinstance(value, str) and len(value) == _HASH_LENGTH and all(c in "0123456789abcdef" for c in value)):
            raise InvalidInput(f"anchor {source!r}: {name} is not a SHA-256 hex digest", fix=fix)
    if not isinstance(signer, str) or not signer.startswith("ed25519:"):
        raise InvalidInput(f"anchor {source!r}: key_id={signer!r} is not an Ed25519 key id", fix=fix)
    anchored_at = body.get("anchored_at")
    if not isinstance(anchored_at, str):
        raise InvalidInput(f"anchor {source!r} has no anchored_at time", fix=fix)
    return Checkpoint(
        ledger_id=str(ledger_id),
        seq=seq,
        entry_hash=str(entry_hash),
        anchored_at=parse_time(anchored_at, f"anchored_at of anchor {source!r}"),
        key_id=signer,
    )


@dataclass(frozen=True)
class AnchorRound:
    """One periodic anchoring step: the verification against the earlier anchors, and the new anchor."""

    report: VerificationReport
    anchor: Anchor | None
    """``None`` when the verification failed: a damaged chain is never anchored."""
    path: Path | None


def verify_and_anchor(ledger: Ledger, private_key: Ed25519PrivateKey, directory: str | Path) -> AnchorRound:
    """Verify incrementally from the anchors in ``directory``, then anchor the tip there if the chain holds.

    Every earlier anchor must be signed by the same key (one key per anchor directory). Run it on a
    schedule (the example Airflow DAG and Prefect flow do) and keep ``directory`` off the database host.
    """
    folder = Path(directory)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    public_key = private_key.public_key()
    anchors = [read_anchor(path, public_key) for path in files]
    report = ledger.verify(anchors=anchors, full=not anchors)
    if not report.ok:
        return AnchorRound(report, None, None)
    signed = make_anchor(ledger, private_key)
    return AnchorRound(report, signed, write_anchor(signed, folder))
