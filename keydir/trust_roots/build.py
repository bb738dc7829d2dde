"""Build ``mozilla-email-roots.pem`` from NSS's ``certdata.txt``.

Why this script exists: sealgate has to decide which partner signatures chain to a CA the
world trusts for e-mail, and the most widely reviewed answer is Mozilla's root store as NSS
ships it (Thunderbird uses it for S/MIME). Other distributions of "Mozilla's roots" (PEM
bundles for TLS) keep only the server-authentication bit, so we read NSS's own source file,
which carries the per-purpose trust.

Source of the committed bundle: ``nss/lib/ckfw/builtins/certdata.txt`` from the upstream NSS
3.110 tarball of Debian's source package ``nss`` 2:3.110-1+deb13u5 (``nss_3.110.orig.tar.gz``,
SHA-256 9cd610c40422a07771b9b45166be2d052ea2f00b605a7928129e1f2071b3ae27); builtin-roots
version 2.74 (``nssckbi.h`` beside it). Debian's ``ca-certificates`` 20250419 source package
carries a byte-identical copy. The bundle's header repeats the SHA-256 of the
``certdata.txt`` it was built from, so a rebuild can be checked.

Selection rule, the one NSS applies when it validates an S/MIME certificate: a certificate
object is kept when

* its trust object (matched by issuer and serial number, and checked against the trust
  object's SHA-1 of the certificate) has ``CKA_TRUST_EMAIL_PROTECTION`` equal to
  ``CKT_NSS_TRUSTED_DELEGATOR`` (a trusted issuer; ``CKT_NSS_MUST_VERIFY_TRUST`` means "no
  trust of its own" and ``CKT_NSS_NOT_TRUSTED`` is an explicit distrust), and
* it carries no ``CKA_NSS_EMAIL_DISTRUST_AFTER`` date. NSS keeps such a root but refuses
  certificates it issued after that date; a sealgate trust anchor has no such cut-off, so
  keeping the root would trust the very certificates Mozilla distrusted. We drop it, and
  the few older certificates it issued are no longer trusted.

Checked against NSS itself: on the certdata.txt of builtin roots 2.60 (the version of the
NSS module Debian 12 installs), this rule selects exactly the roots that NSS's module marks
as trusted for S/MIME, less the eight carrying an e-mail distrust-after date.

Five selected roots (Go Daddy and Starfield Class 2, Security Communication RootCA2, the two
HARICA 2015 roots) have serial number 0, which RFC 5280 forbids; cryptography loads them with
a deprecation warning. They stay: NSS trusts them, and our path building does not need the
serial of an anchor.

To rebuild: ``python -m keydir.trust_roots.build --certdata .../certdata.txt --source "NSS
3.xxx as in Debian's source package nss ..." --out keydir/trust_roots/mozilla-email-roots.pem``,
update the source paragraph above, and commit. The build writes the roots it skipped, and
why, to standard error.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from cryptography import x509

TRUSTED_DELEGATOR = "CKT_NSS_TRUSTED_DELEGATOR"

AttributeValue = str | bytes | bool
PKCS11Object = dict[str, AttributeValue]


class CertdataError(ValueError):
    """The file is not the certdata.txt format we understand; better to stop than guess."""


@dataclass(frozen=True)
class Root:
    label: str
    certificate: x509.Certificate
    der: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


@dataclass(frozen=True)
class Skipped:
    label: str
    reason: str


def parse_certdata(text: str) -> list[PKCS11Object]:
    """The PKCS#11 objects in a certdata.txt, attribute name to value.

    The format is NSS's own: after ``BEGINDATA`` each line is ``CKA_NAME TYPE VALUE``, an
    object starts at each ``CKA_CLASS``, ``MULTILINE_OCTAL`` values are ``\\ooo`` escapes on
    the following lines up to ``END``. Values come back as bytes (octal), bool (CK_BBOOL),
    str (UTF8 strings and symbolic constants such as CKT_NSS_TRUSTED_DELEGATOR).
    """
    objects: list[PKCS11Object] = []
    current: PKCS11Object | None = None
    lines = iter(enumerate(text.splitlines(), start=1))
    started = False
    for number, raw in lines:
        line = raw.strip()
        if not started:
            started = line == "BEGINDATA"
            continue
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3 and not (len(parts) == 2 and parts[1] == "MULTILINE_OCTAL"):
            raise CertdataError(f"line {number}: expected 'CKA_NAME TYPE VALUE', got {raw!r}")
        name, kind = parts[0], parts[1]
        value: AttributeValue
        if kind == "MULTILINE_OCTAL":
            value = _read_octal(lines, number)
        elif kind == "UTF8":
            value = _unquote(parts[2], number)
        elif kind == "CK_BBOOL":
            if parts[2] not in ("CK_TRUE", "CK_FALSE"):
                raise CertdataError(f"line {number}: CK_BBOOL must be CK_TRUE or CK_FALSE")
            value = parts[2] == "CK_TRUE"
        else:  # CK_OBJECT_CLASS, CK_TRUST, CK_CERTIFICATE_TYPE: a symbolic constant
            value = parts[2]
        if name == "CKA_CLASS":
            current = {}
            objects.append(current)
        elif current is None:
            raise CertdataError(f"line {number}: {name} before the first CKA_CLASS")
        if name in current:
            raise CertdataError(f"line {number}: {name} twice in one object")
        current[name] = value
    if not started:
        raise CertdataError("no BEGINDATA line: this is not an NSS certdata.txt")
    return objects


def _read_octal(lines: Iterable[tuple[int, str]], start: int) -> bytes:
    chunks: list[bytes] = []
    for number, raw in lines:
        line = raw.strip()
        if line == "END":
            return b"".join(chunks)
        if not re.fullmatch(r"(\\[0-7]{3})+", line):
            raise CertdataError(f"line {number}: expected \\ooo octal bytes or END")
        chunks.append(bytes(int(octet, 8) for octet in line.split("\\")[1:]))
    raise CertdataError(f"line {start}: MULTILINE_OCTAL value without END")


def _unquote(value: str, number: int) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"' or "\\" in value:
        raise CertdataError(f"line {number}: expected a plain \"quoted\" UTF8 value")
    return value[1:-1]


def select_email_roots(objects: Sequence[PKCS11Object]) -> tuple[list[Root], list[Skipped]]:
    """The certificates NSS trusts to issue e-mail certificates, in certdata order.

    Also returns what was left out and why, so a rebuild's changes can be read and checked.
    """
    trust: dict[tuple[bytes, bytes], list[PKCS11Object]] = {}
    for obj in objects:
        if obj.get("CKA_CLASS") == "CKO_NSS_TRUST":
            key = (_bytes(obj, "CKA_ISSUER"), _bytes(obj, "CKA_SERIAL_NUMBER"))
            trust.setdefault(key, []).append(obj)
    roots: list[Root] = []
    skipped: list[Skipped] = []
    for obj in objects:
        if obj.get("CKA_CLASS") != "CKO_CERTIFICATE":
            continue
        label = str(obj.get("CKA_LABEL", "(no label)"))
        der = _bytes(obj, "CKA_VALUE")
        matches = trust.get((_bytes(obj, "CKA_ISSUER"), _bytes(obj, "CKA_SERIAL_NUMBER")), [])
        for match in matches:
            expected = match.get("CKA_CERT_SHA1_HASH")
            if expected is not None and expected != hashlib.sha1(der).digest():
                raise CertdataError(f"{label}: the trust object's SHA-1 does not match the "
                                    "certificate with its issuer and serial number")
        email_trust = {str(match.get("CKA_TRUST_EMAIL_PROTECTION")) for match in matches}
        distrust_after = obj.get("CKA_NSS_EMAIL_DISTRUST_AFTER", False)
        if not matches:
            skipped.append(Skipped(label, "no trust object"))
        elif email_trust != {TRUSTED_DELEGATOR}:
            skipped.append(Skipped(label, "e-mail trust " + ", ".join(sorted(email_trust))))
        elif distrust_after is not False:
            when = _distrust_date(distrust_after, label)
            skipped.append(Skipped(label, f"e-mail distrust after {when:%Y-%m-%d}"))
        else:
            roots.append(Root(label, x509.load_der_x509_certificate(der), der))
    return roots, skipped


def _bytes(obj: PKCS11Object, name: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, bytes):
        raise CertdataError(f"{obj.get('CKA_LABEL', '(no label)')}: {name} missing or not "
                            "MULTILINE_OCTAL")
    return value


def _distrust_date(value: AttributeValue, label: str) -> datetime:
    """NSS stores the cut-off as the ASCII of a UTCTime, e.g. ``240630000000Z``."""
    if value is True or not isinstance(value, bytes):
        raise CertdataError(f"{label}: CKA_NSS_EMAIL_DISTRUST_AFTER is neither CK_FALSE nor "
                            "a date")
    try:
        return datetime.strptime(value.decode("ascii"), "%y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CertdataError(f"{label}: CKA_NSS_EMAIL_DISTRUST_AFTER {value!r} is not a "
                            "UTCTime") from exc


def builtins_version(certdata: Path) -> str | None:
    """The builtin-roots version from the ``nssckbi.h`` that sits beside certdata.txt in
    NSS's source tree (and in Debian's ca-certificates source), when it is there."""
    header = certdata.with_name("nssckbi.h")
    if not header.is_file():
        return None
    found = re.search(r'#define\s+NSS_BUILTINS_LIBRARY_VERSION\s+"([^"]+)"',
                      header.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def render_bundle(roots: Sequence[Root], *, source: str, built: date) -> str:
    """The PEM file: a header saying where it came from, then one commented block a root."""
    lines = [
        "# Mozilla's e-mail trust roots: the CA certificates NSS trusts to issue S/MIME",
        "# certificates. Generated by keydir/trust_roots/build.py: do not edit by hand.",
        *textwrap.wrap(f"Source: {source}", 90, initial_indent="# ",
                       subsequent_indent="#   "),
        "# Selection: CKA_TRUST_EMAIL_PROTECTION = CKT_NSS_TRUSTED_DELEGATOR and no",
        "#   CKA_NSS_EMAIL_DISTRUST_AFTER (see the build script's docstring for why).",
        f"# Built: {built.isoformat()}",
        f"# Roots: {len(roots)}",
        "",
    ]
    for root in roots:
        body = base64.encodebytes(root.der).decode("ascii").replace("\n", "")
        lines += [
            f"# Label: {root.label}",
            f"# Subject: {root.certificate.subject.rfc4514_string()}",
            f"# SHA-256: {root.sha256}",
            "-----BEGIN CERTIFICATE-----",
            *textwrap.wrap(body, 64),
            "-----END CERTIFICATE-----",
            "",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m keydir.trust_roots.build",
        description="Write the roots NSS trusts for e-mail, from NSS's certdata.txt, as PEM.")
    parser.add_argument("--certdata", type=Path, required=True,
                        help="NSS's lib/ckfw/builtins/certdata.txt")
    parser.add_argument("--out", type=Path, required=True, help="the PEM bundle to write")
    parser.add_argument("--source", default="",
                        help="where certdata.txt came from (NSS release, package), for the "
                             "bundle's header")
    args = parser.parse_args(argv)

    data = args.certdata.read_bytes()
    try:
        roots, skipped = select_email_roots(parse_certdata(data.decode("utf-8")))
    except CertdataError as exc:
        print(f"{args.certdata}: {exc}", file=sys.stderr)
        return 1
    version = builtins_version(args.certdata)
    source = ", ".join(part for part in (
        "NSS certdata.txt" + (f" (builtin roots {version})" if version else ""),
        args.source,
        f"certdata.txt SHA-256 {hashlib.sha256(data).hexdigest()}",
    ) if part)
    args.out.write_text(render_bundle(roots, source=source, built=datetime.now(UTC).date()),
                        encoding="utf-8")
    for skip in skipped:
        print(f"skipped {skip.label!r}: {skip.reason}", file=sys.stderr)
    print(f"wrote {len(roots)} e-mail roots to {args.out} ({len(skipped)} skipped)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
