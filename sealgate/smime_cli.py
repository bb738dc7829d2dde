"""``sealgate smime``: mail-shaped ``openssl cms`` over the gateway's own engine.

Every verb reads a message from a file or standard input and writes to standard output
or ``--out``. Exit status: 0 success; 1 the signature is not valid (verify) ; 2 bad usage;
3 the input or a key could not be processed (the message says what to do).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import click
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

import smime
from smime.chain import email_usage_problem

EXIT_NOT_VALID = 1
EXIT_FAILED = 3


class Failure(click.ClickException):
    """An operation failed for a reason the user can act on."""

    exit_code = EXIT_FAILED


def _read_input(source: BinaryIO) -> bytes:
    data = source.read()
    if not data:
        raise Failure("the input is empty: give a message file or pipe one in")
    return data


def _write(out: Path | None, data: bytes) -> None:
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        out.write_bytes(data)


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Failure(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _password(path: Path | None) -> bytes | None:
    if path is None:
        return None
    return _read_file(path, "password file").rstrip(b"\r\n")


def _credentials(keys: Sequence[Path], certs: Sequence[Path], p12s: Sequence[Path],
                 password_file: Path | None, chain: Path | None = None) -> list[smime.Credential]:
    if len(keys) != len(certs):
        raise click.UsageError("give each --key with its --cert (the same number of each)")
    if not keys and not p12s:
        raise click.UsageError("give --key KEY --cert CERT, or --p12 FILE")
    password = _password(password_file)
    chain_pem = _read_file(chain, "chain file") if chain else None
    try:
        found = [smime.load_pem_credential(_read_file(k, "key file"), _read_file(c, "certificate"),
                                           chain_pem, password)
                 for k, c in zip(keys, certs, strict=True)]
        found += [smime.load_pkcs12(_read_file(p, "PKCS#12 file"), password) for p in p12s]
    except smime.InvalidKey as exc:
        raise Failure(str(exc)) from exc
    return found


def _certificates(paths: Sequence[Path], what: str) -> list[x509.Certificate]:
    found: list[x509.Certificate] = []
    for path in paths:
        try:
            found += smime.load_certificates(_read_file(path, what))
        except smime.InvalidKey as exc:
            raise Failure(f"{path}: {exc}") from exc
    return found


def _at(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _subject(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"


_input = click.argument("message", type=click.File("rb"), default="-")
_out = click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path),
                    help="Write the result here instead of standard output.")
_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_key_options = [
    click.option("--key", "keys", multiple=True, type=_file, help="Private key (PEM or DER)."),
    click.option("--cert", "certs", multiple=True, type=_file,
                 help="Its certificate (PEM; may carry the chain)."),
    click.option("--p12", "p12s", multiple=True, type=_file,
                 help="Key and certificate in one PKCS#12 file."),
    click.option("--password-file", type=_file,
                 help="File holding the password of the key or PKCS#12 file."),
]


def _with_key_options(function: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_key_options):
        function = option(function)
    return function


@click.group("smime")
def smime_group() -> None:
    """Sign, verify, encrypt and decrypt S/MIME messages (files or stdin/stdout)."""


@smime_group.command("sign")
@_input
@_out
@_with_key_options
@click.option("--chain", type=_file, help="Intermediate certificates to include (PEM).")
@click.option("--opaque", is_flag=True,
              help="Opaque signed-data instead of clear-signed multipart/signed.")
@click.option("--digest", type=click.Choice(["sha256", "sha384", "sha512"]),
              help="Digest algorithm [default: sha256; sha384 for P-384 keys].")
@click.option("--pss", is_flag=True, help="RSASSA-PSS instead of PKCS#1 v1.5 (RSA keys).")
def sign_command(message: BinaryIO, out: Path | None, keys: tuple[Path, ...],
                 certs: tuple[Path, ...], p12s: tuple[Path, ...], password_file: Path | None,
                 chain: Path | None, opaque: bool, digest: str | None, pss: bool) -> None:
    """Sign MESSAGE (default: standard input)."""
    credentials = _credentials(keys, certs, p12s, password_file, chain)
    if len(credentials) != 1:
        raise click.UsageError("sign takes exactly one signer")
    signer = credentials[0]
    problem = email_usage_problem(signer.cert, for_signing=True)
    if problem:
        raise Failure(f"the certificate {_subject(signer.cert)} cannot sign mail: {problem}")
    try:
        signed = smime.sign(_read_input(message), signer, signing_time=datetime.now(UTC),
                            opaque=opaque, digest=digest, pss=pss)
    except smime.SmimeError as exc:
        raise Failure(str(exc)) from exc
    _write(out, signed)


def _describe_signer(result: smime.SignerResult) -> list[str]:
    lines = [f"signature: {result.status.value}" + (f" ({result.reason})" if result.reason else "")]
    if result.certificate is not None:
        cert = result.certificate
        lines.append(f"  signer: {', '.join(result.addresses) or _subject(cert)}")
        lines.append(f"  certificate: {_subject(cert)}, serial {cert.serial_number:x}, "
                     f"valid until {cert.not_valid_after_utc:%Y-%m-%d}")
    if result.chain:
        lines.append("  chain: " + " <- ".join(_subject(c) for c in result.chain))
    if result.signing_time:
        lines.append(f"  signed at: {result.signing_time.isoformat()}")
    if result.digest_algorithm:
        weak = " (weak)" if result.weak_digest else ""
        lines.append(f"  digest: {result.digest_algorithm}{weak}")
    if result.capabilities:
        lines.append(f"  capabilities: {', '.join(result.capabilities)}")
    return lines


@smime_group.command("verify")
@_input
@_out
@click.option("--ca", "cas", multiple=True, type=_file,
              help="Trust anchor(s), PEM; repeat for several.")
@click.option("--certfile", "certfiles", multiple=True, type=_file,
              help="Extra intermediate certificates to build the chain with.")
@click.option("--from", "from_address", help="Expected signer address (default: the From).")
@click.option("--no-address-check", is_flag=True,
              help="Do not require the signer's certificate to hold the From address.")
@click.option("--at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              help="Judge as if now were this UTC time (default: now).")
def verify_command(message: BinaryIO, out: Path | None, cas: tuple[Path, ...],
                   certfiles: tuple[Path, ...], from_address: str | None,
                   no_address_check: bool, at: datetime | None) -> None:
    """Verify the signature of MESSAGE; exit 0 only when it is valid.

    The verdict goes to standard error; --out writes the signed content as a message.
    """
    anchors = _certificates(cas, "trust anchor")
    extra = _certificates(certfiles, "certificate file")
    data = _read_input(message)
    try:
        verdict = smime.verify(data, anchors, at=_at(at),
                               from_address=from_address, check_address=not no_address_check,
                               extra_certs=extra)
    except smime.SmimeError as exc:
        raise Failure(str(exc)) from exc
    if not verdict.signers:
        click.echo("signature: invalid (the message has no signer)", err=True)
    for result in verdict.signers:
        click.echo("\n".join(_describe_signer(result)), err=True)
    if not anchors and verdict.status is smime.Status.UNTRUSTED:
        click.echo("hint: give the issuing CA with --ca to check trust", err=True)
    if out is not None:
        _write(out, smime.with_content(data, verdict.content))
    if not verdict.valid:
        sys.exit(EXIT_NOT_VALID)


@smime_group.command("encrypt")
@_input
@_out
@click.option("--recipient", "recipients", multiple=True, required=True, type=_file,
              help="Recipient certificate (PEM/DER); repeat for several recipients.")
@click.option("--cipher", type=click.Choice([c.value for c in smime.Cipher]),
              default=smime.Cipher.AES256_CBC.value, show_default=True)
@click.option("--oaep", is_flag=True, help="RSAES-OAEP (SHA-256) key transport for RSA.")
@click.option("--key-id", is_flag=True,
              help="Name recipients by subject key identifier, not issuer and serial.")
def encrypt_command(message: BinaryIO, out: Path | None, recipients: tuple[Path, ...],
                    cipher: str, oaep: bool, key_id: bool) -> None:
    """Encrypt MESSAGE to every --recipient (EC certificates get ECDH)."""
    certs = _certificates(recipients, "recipient certificate")
    try:
        targets = [smime.Recipient(c, oaep=oaep and _is_rsa(c), by_key_id=key_id) for c in certs]
        encrypted = smime.encrypt(_read_input(message), targets, smime.Cipher(cipher))
    except smime.SmimeError as exc:
        raise Failure(str(exc)) from exc
    _write(out, encrypted)


def _is_rsa(cert: x509.Certificate) -> bool:
    return isinstance(cert.public_key(), rsa.RSAPublicKey)


@smime_group.command("decrypt")
@_input
@_out
@_with_key_options
def decrypt_command(message: BinaryIO, out: Path | None, keys: tuple[Path, ...],
                    certs: tuple[Path, ...], p12s: tuple[Path, ...],
                    password_file: Path | None) -> None:
    """Decrypt MESSAGE with any of the given keys (old key generations included).

    Signature layers around the encryption are opened to reach it; a signature inside
    stays in the output, ready for ``sealgate smime verify``.
    """
    credentials = _credentials(keys, certs, p12s, password_file)
    data = _read_input(message)
    try:
        decrypted, details = smime.decrypt(data, credentials)
    except smime.SmimeError as exc:
        raise Failure(str(exc)) from exc
    click.echo(f"decrypted: {details.cipher}, key via {details.key_transport}, "
               f"for {_subject(details.credential.cert)}", err=True)
    _write(out, decrypted)
