"""Mozilla's e-mail roots: the certdata.txt parser, the shipped bundle, and init loading it."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from keydir.certificates import fingerprint
from keydir.events import recent
from keydir.models import TrustAnchor
from keydir.service import initialise
from keydir.trust import add_anchor, anchors_for
from keydir.trust_roots import BUNDLE, BUNDLED_SOURCE, build, load_bundled_roots
from tests.keydir_fixtures import both_databases, make_config

SHIPPED = Path(build.__file__).with_name(BUNDLE)


def _ca(name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime(2020, 1, 1, tzinfo=UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=7300))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))


def _octal(data: bytes) -> str:
    rows = ["".join(f"\\{byte:03o}" for byte in data[i:i + 16]) for i in range(0, len(data), 16)]
    return "MULTILINE_OCTAL\n" + "\n".join(rows) + "\nEND"


def _serial_der(serial: int) -> bytes:
    content = serial.to_bytes(serial.bit_length() // 8 + 1, "big")  # room for the sign bit
    return bytes([0x02, len(content)]) + content


def _entry(label: str, cert: x509.Certificate, *, email: str,
           server: str = "CKT_NSS_MUST_VERIFY_TRUST", email_distrust_after: bytes | None = None,
           sha1_of: x509.Certificate | None = None) -> str:
    """One certificate and its trust object, laid out as NSS writes them."""
    der = cert.public_bytes(serialization.Encoding.DER)
    issuer, serial = cert.issuer.public_bytes(), _serial_der(cert.serial_number)
    distrust = ("CK_BBOOL CK_FALSE" if email_distrust_after is None
                else _octal(email_distrust_after))
    sha1 = hashlib.sha1((sha1_of or cert).public_bytes(serialization.Encoding.DER)).digest()
    return f"""
# Certificate "{label}"
CKA_CLASS CK_OBJECT_CLASS CKO_CERTIFICATE
CKA_TOKEN CK_BBOOL CK_TRUE
CKA_LABEL UTF8 "{label}"
CKA_CERTIFICATE_TYPE CK_CERTIFICATE_TYPE CKC_X_509
CKA_SUBJECT {_octal(cert.subject.public_bytes())}
CKA_ID UTF8 "0"
CKA_ISSUER {_octal(issuer)}
CKA_SERIAL_NUMBER {_octal(serial)}
CKA_VALUE {_octal(der)}
CKA_NSS_MOZILLA_CA_POLICY CK_BBOOL CK_TRUE
CKA_NSS_SERVER_DISTRUST_AFTER CK_BBOOL CK_FALSE
CKA_NSS_EMAIL_DISTRUST_AFTER {distrust}

# Trust for "{label}"
CKA_CLASS CK_OBJECT_CLASS CKO_NSS_TRUST
CKA_TOKEN CK_BBOOL CK_TRUE
CKA_LABEL UTF8 "{label}"
CKA_CERT_SHA1_HASH {_octal(sha1)}
CKA_ISSUER {_octal(issuer)}
CKA_SERIAL_NUMBER {_octal(serial)}
CKA_TRUST_SERVER_AUTH CK_TRUST {server}
CKA_TRUST_EMAIL_PROTECTION CK_TRUST {email}
CKA_TRUST_CODE_SIGNING CK_TRUST CKT_NSS_MUST_VERIFY_TRUST
CKA_TRUST_STEP_UP_APPROVED CK_BBOOL CK_FALSE
"""


HEADER = """#
# certdata.txt (a handcrafted excerpt in NSS's format)
#
BEGINDATA
CKA_CLASS CK_OBJECT_CLASS CKO_NSS_BUILTIN_ROOT_LIST
CKA_TOKEN CK_BBOOL CK_TRUE
CKA_LABEL UTF8 "Mozilla Builtin Roots"
"""


@pytest.fixture(scope="module")
def excerpt() -> tuple[str, dict[str, x509.Certificate]]:
    certs = {name: _ca(name) for name in ("Mail Root", "Web Root", "Distrusted Root",
                                          "Cut-off Root")}
    text = HEADER + "".join([
        _entry("Mail Root", certs["Mail Root"], email="CKT_NSS_TRUSTED_DELEGATOR"),
        _entry("Web Root", certs["Web Root"], email="CKT_NSS_MUST_VERIFY_TRUST",
               server="CKT_NSS_TRUSTED_DELEGATOR"),
        _entry("Distrusted Root", certs["Distrusted Root"], email="CKT_NSS_NOT_TRUSTED",
               server="CKT_NSS_NOT_TRUSTED"),
        _entry("Cut-off Root", certs["Cut-off Root"], email="CKT_NSS_TRUSTED_DELEGATOR",
               server="CKT_NSS_TRUSTED_DELEGATOR", email_distrust_after=b"240630000000Z"),
    ])
    return text, certs


def test_parser_selects_only_the_root_trusted_for_email_without_a_cutoff(excerpt):
    text, certs = excerpt
    roots, skipped = build.select_email_roots(build.parse_certdata(text))
    assert [root.label for root in roots] == ["Mail Root"]
    assert roots[0].certificate == certs["Mail Root"]
    assert {skip.label: skip.reason for skip in skipped} == {
        "Web Root": "e-mail trust CKT_NSS_MUST_VERIFY_TRUST",
        "Distrusted Root": "e-mail trust CKT_NSS_NOT_TRUSTED",
        "Cut-off Root": "e-mail distrust after 2024-06-30",
    }


def test_parser_reads_octal_utf8_and_boolean_values():
    objects = build.parse_certdata(
        'BEGINDATA\nCKA_CLASS CK_OBJECT_CLASS CKO_CERTIFICATE\nCKA_TOKEN CK_BBOOL CK_TRUE\n'
        'CKA_LABEL UTF8 "NetLock Arany (Class Gold) Főtanúsítvány"\n'
        'CKA_VALUE MULTILINE_OCTAL\n\\060\\003\n\\002\\001\\000\nEND\n')
    assert objects == [{"CKA_CLASS": "CKO_CERTIFICATE", "CKA_TOKEN": True,
                        "CKA_LABEL": "NetLock Arany (Class Gold) Főtanúsítvány",
                        "CKA_VALUE": b"\x30\x03\x02\x01\x00"}]


def test_trust_object_whose_hash_names_another_certificate_is_refused():
    mail, other = _ca("Mail Root"), _ca("Other Root")
    text = HEADER + _entry("Mail Root", mail, email="CKT_NSS_TRUSTED_DELEGATOR", sha1_of=other)
    with pytest.raises(build.CertdataError, match="SHA-1 does not match"):
        build.select_email_roots(build.parse_certdata(text))


@pytest.mark.parametrize("text, problem", [
    ("# no data at all\n", "no BEGINDATA"),
    ("BEGINDATA\nCKA_CLASS CK_OBJECT_CLASS CKO_CERTIFICATE\nCKA_VALUE MULTILINE_OCTAL\n\\060\n",
     "without END"),
    ("BEGINDATA\nCKA_LABEL UTF8 \"x\"\n", "before the first CKA_CLASS"),
    ("BEGINDATA\nCKA_CLASS CK_OBJECT_CLASS CKO_CERTIFICATE\nCKA_TOKEN CK_BBOOL yes\n",
     "CK_BBOOL"),
])
def test_malformed_certdata_is_refused_rather_than_guessed(text, problem):
    with pytest.raises(build.CertdataError, match=problem):
        build.parse_certdata(text)


def test_build_command_writes_each_root_under_its_label_and_hash(excerpt, tmp_path, capsys):
    text, certs = excerpt
    certdata = tmp_path / "certdata.txt"
    certdata.write_text(text, encoding="utf-8")
    (tmp_path / "nssckbi.h").write_text('#define NSS_BUILTINS_LIBRARY_VERSION "2.74"\n')
    out = tmp_path / "roots.pem"
    assert build.main(["--certdata", str(certdata), "--out", str(out),
                       "--source", "a test excerpt"]) == 0
    written = out.read_text(encoding="utf-8")
    assert x509.load_pem_x509_certificates(written.encode()) == [certs["Mail Root"]]
    assert "builtin roots 2.74" in written and "a test excerpt" in written
    assert hashlib.sha256(text.encode()).hexdigest() in written
    assert f"# SHA-256: {fingerprint(certs['Mail Root'])}" in written
    assert "skipped 'Cut-off Root': e-mail distrust after 2024-06-30" in capsys.readouterr().err


def _blocks(pem: str) -> list[tuple[dict[str, str], x509.Certificate]]:
    """Each certificate in a bundle with the comment lines just above it."""
    found = re.findall(r"((?:# [A-Za-z0-9-]+: [^\n]*\n)+)(-----BEGIN CERTIFICATE-----\n"
                       r"[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n)", pem)
    return [(dict(line[2:].split(": ", 1) for line in comments.splitlines()),
             x509.load_pem_x509_certificate(block.encode())) for comments, block in found]


def test_shipped_bundle_is_a_plausible_set_of_distinct_cas():
    roots = load_bundled_roots()
    assert 50 <= len(roots) <= 150
    assert len({fingerprint(root) for root in roots}) == len(roots)
    for root in roots:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca, root.subject.rfc4514_string()


def test_shipped_bundle_names_its_source_and_each_root(tmp_path):
    text = SHIPPED.read_text(encoding="utf-8")
    header = text.split("\n\n", 1)[0]
    assert "NSS certdata.txt" in header and "certdata.txt SHA-256" in header
    assert re.search(r"^# Built: \d{4}-\d{2}-\d{2}$", header, flags=re.M)
    blocks = _blocks(text)
    assert [cert for _, cert in blocks] == load_bundled_roots()
    assert f"# Roots: {len(blocks)}" in header
    for comments, cert in blocks:
        assert comments["Label"] and comments["SHA-256"] == fingerprint(cert)


@both_databases
def test_init_makes_the_bundled_roots_global_anchors(directory):
    bundled = {fingerprint(root) for root in load_bundled_roots()}
    with directory.transaction() as session:
        global_anchors = {fingerprint(cert) for cert in anchors_for(session, None)}
        sources = set(session.scalars(select(TrustAnchor.source)
                                      .where(TrustAnchor.fingerprint.in_(bundled))))
        events = recent(session, action_prefix="trust.bundled-loaded")
    assert bundled <= global_anchors
    assert sources == {BUNDLED_SOURCE}
    assert [event.detail["added"] for event in events] == [len(bundled)]


@both_databases
def test_init_again_adds_no_duplicates_and_no_event(directory, tmp_path, database_url):
    def count() -> int:
        with directory.transaction() as session:
            return session.scalar(select(func.count()).select_from(TrustAnchor))

    before = count()
    initialise(make_config(tmp_path, database_url), datetime.now(UTC)).close()
    assert count() == before
    with directory.transaction() as session:
        assert len(recent(session, action_prefix="trust.bundled-loaded")) == 1


@both_databases
def test_init_drops_roots_the_bundle_no_longer_has_but_keeps_an_admins(directory, tmp_path,
                                                                        database_url):
    now = datetime.now(UTC)
    dropped, kept = _ca("Root Mozilla Removed"), load_bundled_roots()[0]
    with directory.transaction() as session:
        add_anchor(session, dropped, now, source=BUNDLED_SOURCE)
        session.execute(TrustAnchor.__table__.delete().where(
            TrustAnchor.fingerprint == fingerprint(kept)))
        add_anchor(session, kept, now, source="admin")  # an administrator's own choice
    initialise(make_config(tmp_path, database_url), now).close()
    with directory.transaction() as session:
        rows = session.execute(select(TrustAnchor.fingerprint, TrustAnchor.source)
                               .where(TrustAnchor.tenant_id.is_(None))).all()
        last = recent(session, action_prefix="trust.bundled-loaded")[0]
    assert fingerprint(dropped) not in {row.fingerprint for row in rows}
    assert [row.source for row in rows if row.fingerprint == fingerprint(kept)] == ["admin"]
    assert last.detail["removed"] == ["CN=Root Mozilla Removed"]
    assert last.detail["added"] == 0
