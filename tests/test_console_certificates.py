"""The console's partner certificates and trust anchors: list, filter, detail with PEM,
import (PEM and DER, garbage refused clearly), removal, tenant scope and the audit log —
the data logic on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

from keydir import certificates, partner_certificates, trust
from keydir.errors import NotFound, Refused
from keydir.models import Certificate, CertificateKind, Event, TrustAnchor
from keydir.service import Directory
from tests.console_helpers import (
    ACME_ADMIN,
    GLOBEX_ADMIN,
    OPERATOR_ADDRESS,
    Console,
    make_console,
    post,
)
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401
from tests.pki import TestPKI

LIST = "/console/certificates/"
IMPORT = "/console/certificates/import"
TRUST = "/console/trust/"


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    return make_console(directory)


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def upload(client, path: str, content: bytes, name: str = "partner.pem", **fields: str):
    return post(client, path, {"certificate": (io.BytesIO(content), name), **fields},
                content_type="multipart/form-data")


def import_for(console: Console, tenant: str, cert, **where: str) -> int:
    with console.directory.transaction() as db:
        return certificates.import_certificate(db, console.tenant_ids[tenant], cert,
                                               datetime.now(UTC), **where).id


def events(console: Console, action: str) -> list[Event]:
    with console.directory.transaction() as db:
        rows = list(db.scalars(select(Event).where(Event.action == action)))
        db.expunge_all()
        return rows


# --- data layer -----------------------------------------------------------------------------


@both_databases
def test_partner_certificates_list_by_kind_search_and_state(console, pki):
    now = datetime.now(UTC)
    bob = import_for(console, "acme", pki.issue("bob@partner.example").cert)
    soon = pki.issue("sam@partner.example", not_after=now + timedelta(days=10))
    import_for(console, "acme", soon.cert)
    import_for(console, "acme", pki.issue("gw@other.example").cert, domain="other.example")
    import_for(console, "globex", pki.issue("gus@partner.example").cert)
    acme = console.tenant_ids["acme"]
    with console.directory.transaction() as db:
        rows = partner_certificates.list_external(db, acme)
        assert [r.address or r.domain for r in rows] == [
            "bob@partner.example", "other.example", "sam@partner.example"]
        assert [r.domain for r in partner_certificates.list_external(
            db, acme, kind=CertificateKind.PARTNER_DOMAIN)] == ["other.example"]
        assert [r.address for r in partner_certificates.list_external(
            db, acme, search="SAM@")] == ["sam@partner.example"]
        states = {r.address or r.domain: partner_certificates.state_of(r, now) for r in rows}
        assert states["sam@partner.example"] == "expiring"
        assert states["bob@partner.example"] == "valid"
        assert partner_certificates.state_of(rows[0], now + timedelta(days=400)) == "expired"
        # Another tenant's certificate is "not found", like a missing one.
        gus = partner_certificates.list_external(db, console.tenant_ids["globex"])[0].id
        with pytest.raises(NotFound):
            partner_certificates.get_external(db, acme, gus)
        partner_certificates.remove(db, acme, bob, now, actor="it@acme.example")
        assert db.get(Certificate, bob) is None
    assert events(console, "certificate.removed")[0].actor == "it@acme.example"


@both_databases
def test_harvested_certificates_cannot_be_removed(console, pki):
    now = datetime.now(UTC)
    with console.directory.transaction() as db:
        row = certificates.store(db, console.tenant_ids["acme"], CertificateKind.HARVESTED,
                                 pki.issue("hal@partner.example").cert, now,
                                 address="hal@partner.example", source="harvested")
        with pytest.raises(Refused, match="learned again"):
            partner_certificates.remove(db, None, row.id, now)


@both_databases
def test_trust_anchors_of_a_tenant_are_listed_and_removed_in_its_scope(console, pki):
    now = datetime.now(UTC)
    other = TestPKI("Partner Root")
    acme, globex = console.tenant_ids["acme"], console.tenant_ids["globex"]
    with console.directory.transaction() as db:
        mine = trust.add_anchor(db, pki.cert, now, tenant_id=acme).id
        theirs = trust.add_anchor(db, other.cert, now, tenant_id=globex).id
        listed = trust.list_anchors(db, acme)
        assert mine in [a.id for a in listed] and theirs not in [a.id for a in listed]
        assert listed[0].id == mine  # the tenant's own first, then the global ones
        with pytest.raises(NotFound):
            trust.remove_anchor(db, acme, theirs, now)
        internal = next(a for a in listed if a.source == "internal-ca")
        with pytest.raises(Refused, match="only an operator"):
            trust.remove_anchor(db, acme, internal.id, now)
        with pytest.raises(Refused, match="part of the installation"):
            trust.remove_anchor(db, None, internal.id, now, may_change_global=True)
        trust.remove_anchor(db, acme, mine, now, actor="it@acme.example")
        assert db.get(TrustAnchor, mine) is None
    assert [e.actor for e in events(console, "trust.removed")] == ["it@acme.example"]


# --- certificate pages ----------------------------------------------------------------------


@both_databases
def test_the_list_shows_kind_state_and_filters(console, pki):
    import_for(console, "acme", pki.issue("bob@partner.example").cert)
    import_for(console, "acme", pki.issue("gw@other.example").cert, domain="other.example")
    client = console.sign_in(ACME_ADMIN)
    page = text(client.get(LIST))
    assert "bob@partner.example" in page and "other.example" in page
    assert "Partner domain" in page and "valid" in page
    only = text(client.get(LIST + "?kind=partner-domain"))
    assert "other.example" in only and "bob@partner.example" not in only
    found = text(client.get(LIST + "?q=bob"))
    assert "bob@partner.example" in found and "other.example" not in found
    assert "No certificate matches" in text(client.get(LIST + "?q=nobody"))


def test_detail_shows_fingerprint_and_offers_the_pem(console, pki):
    bob = pki.issue("bob@partner.example")
    cert_id = import_for(console, "acme", bob.cert)
    client = console.sign_in(ACME_ADMIN)
    page = text(client.get(f"/console/certificates/{cert_id}"))
    assert certificates.fingerprint(bob.cert) in page
    assert "BEGIN CERTIFICATE" in page
    download = client.get(f"/console/certificates/{cert_id}/certificate.pem")
    assert download.status_code == 200
    assert download.data == bob.cert.public_bytes(Encoding.PEM)
    assert "attachment" in download.headers["Content-Disposition"]


@both_databases
def test_upload_pem_and_der_imports_partner_and_domain_certificates(console, pki):
    client = console.sign_in(ACME_ADMIN)
    answer = upload(client, IMPORT, pki.issue("bob@partner.example").cert_pem())
    assert answer.status_code == 302, text(answer)
    assert "Imported" in text(client.get(answer.location))
    der = pki.issue("gw@other.example").cert.public_bytes(Encoding.DER)
    answer = upload(client, IMPORT, der, "gateway.cer", domain="Other.Example")
    assert answer.status_code == 302, text(answer)
    with console.directory.transaction() as db:
        rows = {(r.kind, r.address or r.domain, r.tenant_id)
                for r in certificates.list_certificates(db)}
    acme = console.tenant_ids["acme"]
    assert rows == {(CertificateKind.IMPORTED, "bob@partner.example", acme),
                    (CertificateKind.PARTNER_DOMAIN, "other.example", acme)}
    assert {e.actor for e in events(console, "certificate.imported")} == {ACME_ADMIN}


def test_upload_of_a_file_that_is_no_certificate_says_so_and_keeps_the_fields(console):
    client = console.sign_in(ACME_ADMIN)
    answer = upload(client, IMPORT, b"\x00\x01 these are holiday photos", "photo.jpg",
                    address="bob@partner.example")
    page = text(answer)
    assert answer.status_code == 200
    assert "This file is not a certificate" in page
    assert 'value="bob@partner.example"' in page
    assert events(console, "certificate.imported") == []


def test_a_certificate_the_rules_refuse_shows_why(console, pki):
    client = console.sign_in(ACME_ADMIN)
    # One of our own users: their certificates come from our CA, never by hand.
    answer = upload(client, IMPORT, pki.issue("alice@acme.example").cert_pem())
    assert answer.status_code == 200 and "one of our own users" in text(answer)
    answer = upload(client, IMPORT, pki.issue("sig@partner.example",
                                              key_usage="sign-only").cert_pem())
    assert "cannot be used for encryption" in text(answer)


def test_an_operator_must_choose_a_tenant_before_importing(console, pki):
    client = console.sign_in(OPERATOR_ADDRESS)
    assert "Choose the tenant" in text(client.get(IMPORT))
    answer = upload(client, IMPORT, pki.issue("bob@partner.example").cert_pem())
    assert answer.status_code == 200 and "Choose the tenant" in text(answer)
    with console.directory.transaction() as db:
        assert certificates.list_certificates(db) == []


@both_databases
def test_removing_an_imported_certificate_is_audited(console, pki):
    cert_id = import_for(console, "acme", pki.issue("bob@partner.example").cert)
    client = console.sign_in(ACME_ADMIN)
    path = f"/console/certificates/{cert_id}"
    answer = post(client, path + "/remove", {}, page=path)
    assert answer.status_code == 302
    assert "is removed" in text(client.get(answer.location))
    assert client.get(path).status_code == 404
    assert [e.actor for e in events(console, "certificate.removed")] == [ACME_ADMIN]


@both_databases
def test_a_tenant_admin_never_sees_another_tenants_certificates(console, pki):
    theirs = import_for(console, "globex", pki.issue("gus@partner.example").cert)
    client = console.sign_in(ACME_ADMIN)
    assert "gus@partner.example" not in text(client.get(LIST))
    assert "gus@partner.example" not in text(client.get(LIST + "?q=gus"))
    for path in (f"/console/certificates/{theirs}",
                 f"/console/certificates/{theirs}/certificate.pem"):
        assert client.get(path).status_code == 404
    answer = post(client, f"/console/certificates/{theirs}/remove", {}, page=LIST)
    assert answer.status_code == 404
    with console.directory.transaction() as db:
        assert db.get(Certificate, theirs) is not None
    # The operator sees both tenants' with the tenant named.
    operator = console.sign_in(OPERATOR_ADDRESS)
    page = text(operator.get(LIST))
    assert "gus@partner.example" in page and "Globex Ltd" in page


# --- trust anchor pages ---------------------------------------------------------------------


@both_databases
def test_a_tenant_admin_adds_and_removes_a_tenant_anchor(console):
    partner = TestPKI("Zz Partner Test Root")
    client = console.sign_in(ACME_ADMIN)
    answer = upload(client, TRUST, partner.ca_pem(), "root.pem")
    assert answer.status_code == 302, text(answer)
    page = text(client.get(TRUST))
    assert "Zz Partner Test Root" in page and "Trusted from now on" in page
    with console.directory.transaction() as db:
        anchor = db.scalar(select(TrustAnchor).where(
            TrustAnchor.subject.contains("Zz Partner Test")))
        assert anchor is not None and anchor.tenant_id == console.tenant_ids["acme"]
        anchor_id = anchor.id
    # globex does not see acme's anchor, and cannot remove it.
    other = console.sign_in(GLOBEX_ADMIN)
    assert "Zz Partner Test Root" not in text(other.get(TRUST))
    assert post(other, f"/console/trust/{anchor_id}/remove", {}, page=TRUST).status_code == 404
    answer = post(client, f"/console/trust/{anchor_id}/remove", {}, page=TRUST)
    assert answer.status_code == 302
    assert "No longer trusted" in text(client.get(answer.location))
    assert [e.actor for e in events(console, "trust.added")][-1] == ACME_ADMIN
    assert [e.actor for e in events(console, "trust.removed")] == [ACME_ADMIN]


def test_a_non_ca_certificate_or_garbage_is_refused_with_its_reason(console, pki):
    client = console.sign_in(ACME_ADMIN)
    answer = upload(client, TRUST, pki.issue("bob@partner.example").cert_pem())
    assert answer.status_code == 200 and "is not a CA certificate" in text(answer)
    answer = upload(client, TRUST, b"not a certificate at all")
    assert "This file is not a certificate" in text(answer)


def test_global_anchors_are_read_only_for_tenant_admins(console):
    client = console.sign_in(ACME_ADMIN)
    page = text(client.get(TRUST))
    assert "only its operator can change them" in page
    assert "Bundled root store" in page
    with console.directory.transaction() as db:
        internal = db.scalar(select(TrustAnchor.id).where(TrustAnchor.source == "internal-ca"))
    answer = post(client, f"/console/trust/{internal}/remove", {}, page=TRUST)
    assert answer.status_code == 302
    assert "only an operator" in text(client.get(answer.location))
    assert not re.search(rf"/console/trust/{internal}/remove", page)


def test_an_operator_adds_a_global_anchor_and_may_remove_it(console):
    partner = TestPKI("Zz Sector Test Root")
    client = console.sign_in(OPERATOR_ADDRESS)
    assert upload(client, TRUST, partner.ca_pem(), "root.pem").status_code == 302
    with console.directory.transaction() as db:
        anchor = db.scalar(select(TrustAnchor).where(
            TrustAnchor.subject.contains("Zz Sector Test")))
        assert anchor is not None and anchor.tenant_id is None and anchor.source == "admin"
        anchor_id = anchor.id
    assert post(client, f"/console/trust/{anchor_id}/remove", {},
                page=TRUST).status_code == 302
    with console.directory.transaction() as db:
        assert db.get(TrustAnchor, anchor_id) is None
