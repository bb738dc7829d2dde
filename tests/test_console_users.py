"""The console's user pages: the list, adding, participation, issuing, revoking (the CRL
lists it), the PKCS#12 export, tenant isolation; revocation in the data layer on both
databases and in the REST API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from keydir import certificates, issuance, own_revocation, tenancy
from keydir.ca.base import IssuanceFailed
from keydir.errors import Conflict, NotFound, Refused
from keydir.models import Certificate, CertificateKind, Event, IssuanceRequest
from keydir.usage_models import ParticipationPeriod
from tests.api_helpers import make_api
from tests.console_helpers import ACME_ADMIN, OPERATOR_ADDRESS, make_console, post
from tests.keydir_fixtures import (  # noqa: F401
    both_databases,
    database_url,
    directory,
)
from tests.portal_helpers import csrf

ALICE = "alice@acme.example"
GINA = "gina@globex.example"
EXPORT_PASSWORD = "a long export password"


@pytest.fixture
def console(directory):  # noqa: F811
    return make_console(directory)


def _issue(console, address: str = ALICE) -> Certificate:
    with console.directory.transaction() as session:
        outcome = issuance.issue(console.directory, session, address, datetime.now(UTC))
        assert outcome.certificate is not None
        return outcome.certificate


def _internal_issuer(directory) -> str:  # noqa: F811
    return directory.internal_ca.certificate.subject.rfc4514_string()


# --- data layer ----------------------------------------------------------------------------


@both_databases
def test_revoke_own_marks_the_certificate_records_it_and_the_crl_lists_it(
        directory):  # noqa: F811
    console = make_console(directory)
    row = _issue(console)
    now = datetime.now(UTC)
    with directory.transaction() as session:
        done = own_revocation.revoke_own(session, ALICE, row.serial, "keyCompromise", now,
                                         "it@acme.example",
                                         internal_issuer=_internal_issuer(directory))
        assert done.by_internal_ca
        assert certificates.current_own(session, ALICE, now) is None
    with directory.transaction() as session:
        stored = session.get(Certificate, row.id)
        assert stored.revoked_at is not None and stored.revocation_reason == "keyCompromise"
        event = session.scalar(select(Event).where(Event.action == "certificate.revoked"))
        assert event.actor == "it@acme.example" and event.detail["serial"] == row.serial
        with pytest.raises(Conflict):
            own_revocation.revoke_own(session, ALICE, row.serial, "superseded", now, "x",
                                      internal_issuer=_internal_issuer(directory))
        with pytest.raises(Refused):
            own_revocation.revoke_own(session, ALICE, row.serial, "because", now, "x",
                                      internal_issuer=_internal_issuer(directory))
        with pytest.raises(NotFound):
            own_revocation.revoke_own(session, ALICE, "abc", "superseded", now, "x",
                                      internal_issuer=_internal_issuer(directory))
    crl = x509.load_der_x509_crl(console.client().get("/ca/crl").data)
    assert crl.get_revoked_certificate_by_serial_number(int(row.serial, 16)) is not None


# --- the list ------------------------------------------------------------------------------


def test_list_searches_filters_and_pages_within_the_tenant(console):
    now = datetime.now(UTC)
    with console.directory.transaction() as session:
        for n in range(55):
            tenancy.add_user(session, f"staff{n:02d}@acme.example", now)
        tenancy.add_user(session, "left@acme.example", now)
        tenancy.remove_user(session, "left@acme.example", now)
    _issue(console)
    client = console.sign_in(ACME_ADMIN)
    first = client.get("/console/users").get_data(as_text=True)
    assert "57 found" in first and 'class="pager"' in first and "Page 1 of 2" in first
    assert GINA not in first and ">Tenant<" not in first  # one tenant: no tenant column
    assert "valid until" in first  # alice's certificate
    second = client.get("/console/users?page=2").get_data(as_text=True)
    assert "staff54@acme.example" in second and "staff00@acme.example" not in second
    found = client.get("/console/users?q=STAFF1").get_data(as_text=True)
    assert "10 found" in found and "alice" not in found
    gone = client.get("/console/users?show=not-participating").get_data(as_text=True)
    assert "1 found" in gone and "left@acme.example" in gone
    without = client.get("/console/users?show=without-certificate").get_data(as_text=True)
    assert "55 found" in without and ALICE not in without
    assert 'class="state">none' in without


def test_the_operator_sees_every_tenant_with_a_tenant_column(console):
    page = console.sign_in(OPERATOR_ADDRESS).get("/console/users").get_data(as_text=True)
    assert ALICE in page and GINA in page and ">Tenant<" in page and "globex" in page


def test_list_shows_pending_issuance_and_revoked_states(console, monkeypatch):
    _issue(console)
    with console.directory.transaction() as session:
        row = certificates.current_own(session, ALICE, datetime.now(UTC))
        row.revoked_at, row.revocation_reason = datetime.now(UTC), "superseded"

    def failing(request, now):
        raise IssuanceFailed("the CA is down", retry=True)

    monkeypatch.setattr(console.directory.ca, "issue", failing)
    client = console.sign_in(OPERATOR_ADDRESS)
    post(client, f"/console/users/{GINA}/issue", {}, page=f"/console/users/{GINA}")
    page = client.get("/console/users").get_data(as_text=True)
    assert "revoked" in page and "pending issuance" in page


# --- adding --------------------------------------------------------------------------------


def test_add_user_in_an_own_domain_and_refuse_another_tenants(console):
    client = console.sign_in(ACME_ADMIN)
    added = post(client, "/console/users", {"address": "New@Acme.example"})
    assert added.status_code == 302 and added.location.endswith("/console/users/new@acme.example")
    refused = post(client, "/console/users", {"address": "spy@globex.example"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 200 and "not one of this tenant" in html
    assert 'value="spy@globex.example"' in html  # what was typed is kept
    twice = post(client, "/console/users", {"address": "new@acme.example"})
    assert "participating user already" in twice.get_data(as_text=True)
    with console.directory.transaction() as session:
        assert tenancy.participant(session, "spy@globex.example") is None
        assert session.scalar(select(Event).where(
            Event.action == "user.added", Event.subject == "new@acme.example")).actor \
            == ACME_ADMIN


# --- participation -------------------------------------------------------------------------


def test_participation_toggle_keeps_the_billing_periods(console):
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    assert "Stop participation" in client.get(page).get_data(as_text=True)
    assert post(client, f"{page}/participation", {}, page=page).status_code == 302
    html = client.get(page).get_data(as_text=True)
    assert "not participating" in html and "Participate again" in html
    post(client, f"{page}/participation", {}, page=page)
    with console.directory.transaction() as session:
        periods = session.scalars(select(ParticipationPeriod).where(
            ParticipationPeriod.address == ALICE).order_by(ParticipationPeriod.id)).all()
        assert len(periods) == 2 and periods[0].ended_at is not None
        assert periods[1].ended_at is None
        actions = [e.action for e in session.scalars(select(Event).where(
            Event.subject == ALICE, Event.actor == ACME_ADMIN).order_by(Event.id))]
        assert actions == ["user.removed", "user.added"]


# --- issuing -------------------------------------------------------------------------------


def test_issue_now_shows_the_certificate_details(console):
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    answer = post(client, f"{page}/issue", {}, page=page, follow_redirects=True)
    html = answer.get_data(as_text=True)
    with console.directory.transaction() as session:
        row = certificates.current_own(session, ALICE, datetime.now(UTC))
        assert row is not None
    assert "A new certificate is issued" in html
    for fact in (row.serial, row.fingerprint, row.issuer, row.subject, "RSA 2048"):
        assert fact in html
    # A second one: the first moves to the history table.
    html = post(client, f"{page}/issue", {}, page=page, follow_redirects=True).get_data(
        as_text=True)
    assert "Earlier certificates" in html and "superseded" in html


def test_a_ca_failure_becomes_a_pending_request_the_page_explains(console, monkeypatch):
    def failing(request, now):
        raise IssuanceFailed("connection refused", retry=True)

    monkeypatch.setattr(console.directory.ca, "issue", failing)
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    html = post(client, f"{page}/issue", {}, page=page, follow_redirects=True).get_data(
        as_text=True)
    assert "connection refused" in html and "issuance job tries again" in html
    assert "An issuance is pending" in html
    with console.directory.transaction() as session:
        request = session.scalar(select(IssuanceRequest).where(
            IssuanceRequest.address == ALICE))
        assert request is not None and request.state == "pending"


# --- revoking ------------------------------------------------------------------------------


def test_revoke_with_a_replacement_puts_the_serial_on_the_crl(console):
    old = _issue(console)
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    html = client.get(page).get_data(as_text=True)
    assert "Key compromise" in html and "Cessation of operation" in html
    assert 'data-confirm="Revoke this certificate' in html
    answer = post(client, f"{page}/revoke", {"serial": old.serial, "reason": "keyCompromise",
                                             "replace": "y"}, page=page,
                  follow_redirects=True)
    html = answer.get_data(as_text=True)
    assert "the CRL lists it" in html and "A new certificate is issued" in html
    crl = x509.load_der_x509_crl(client.get("/ca/crl").data)
    assert crl.get_revoked_certificate_by_serial_number(int(old.serial, 16)) is not None
    with console.directory.transaction() as session:
        current = certificates.current_own(session, ALICE, datetime.now(UTC))
        assert current is not None and current.serial != old.serial
        assert session.get(Certificate, old.id).revocation_reason == "keyCompromise"
        event = session.scalar(select(Event).where(Event.action == "certificate.revoked"))
        assert event.actor == ACME_ADMIN and event.detail["reason"] == "keyCompromise"


def test_revoking_an_outside_cas_certificate_says_it_is_only_no_longer_used(console, pki):
    outside = pki.issue(ALICE)
    with console.directory.transaction() as session:
        certificates.store(session, console.tenant_ids["acme"], CertificateKind.OWN,
                           outside.cert, datetime.now(UTC), address=ALICE, source="acme: test")
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    assert "from an outside CA" in client.get(page).get_data(as_text=True)
    serial = format(outside.cert.serial_number, "x")
    html = post(client, f"{page}/revoke", {"serial": serial, "reason": "superseded"},
                page=page, follow_redirects=True).get_data(as_text=True)
    assert "sealgate does not revoke it there" in html
    crl = x509.load_der_x509_crl(client.get("/ca/crl").data)
    assert crl.get_revoked_certificate_by_serial_number(outside.cert.serial_number) is None


# --- export --------------------------------------------------------------------------------


def test_export_downloads_a_pkcs12_that_opens_with_the_password(console):
    row = _issue(console)
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    answer = post(client, f"{page}/export", {"password": EXPORT_PASSWORD,
                                             "confirm": EXPORT_PASSWORD}, page=page)
    assert answer.status_code == 200 and answer.mimetype == "application/x-pkcs12"
    assert answer.headers["Content-Disposition"] == \
        'attachment; filename="alice_acme.example.p12"'
    key, cert, chain = pkcs12.load_key_and_certificates(answer.data, EXPORT_PASSWORD.encode())
    assert key is not None and format(cert.serial_number, "x") == row.serial
    assert chain == [console.directory.internal_ca.certificate]
    with console.directory.transaction() as session:
        event = session.scalar(select(Event).where(Event.action == "key.exported"))
        assert event.actor == ACME_ADMIN
        assert EXPORT_PASSWORD not in str(event.detail) and set(event.detail) == {
            "serial", "format"}


def test_export_refuses_short_or_differing_passwords_and_keeps_nothing(console):
    _issue(console)
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    short = post(client, f"{page}/export", {"password": "short", "confirm": "short"},
                 page=page)
    assert short.status_code == 200 and "at least 12 characters" in short.get_data(as_text=True)
    differ = post(client, f"{page}/export", {"password": EXPORT_PASSWORD,
                                             "confirm": EXPORT_PASSWORD + "!"}, page=page)
    assert "The two passwords differ" in differ.get_data(as_text=True)
    with console.directory.transaction() as session:
        assert session.scalar(select(Event).where(Event.action == "key.exported")) is None


def test_export_file_names_are_safe():
    from portal.console.user_views import export_filename

    assert export_filename('o"brien/../x@acme.example') == "o_brien_.._x_acme.example.p12"


# --- tenant isolation ----------------------------------------------------------------------


def test_another_tenants_user_is_not_found_for_every_action(console):
    _issue(console, GINA)
    client = console.sign_in(ACME_ADMIN)
    assert client.get(f"/console/users/{GINA}").status_code == 404
    token = csrf(client.get("/console/users").get_data(as_text=True))
    for action, data in (("participation", {}), ("issue", {}),
                         ("revoke", {"serial": "1", "reason": "superseded"}),
                         ("export", {"password": EXPORT_PASSWORD,
                                     "confirm": EXPORT_PASSWORD})):
        answer = client.post(f"/console/users/{GINA}/{action}",
                             data={"csrf_token": token, **data})
        assert answer.status_code == 404, action
    with console.directory.transaction() as session:
        assert tenancy.participant(session, GINA) is not None
        assert session.scalar(select(Event).where(Event.actor == ACME_ADMIN)) is None


# --- REST API ------------------------------------------------------------------------------


def test_api_revokes_the_current_certificate_and_issues_a_replacement(directory):  # noqa: F811
    api = make_api(directory)
    assert api.call("post", f"/users/{ALICE}/certificate").status_code == 201
    answer = api.call("post", f"/users/{ALICE}/revoke",
                      json={"reason": "superseded", "replace": True})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["listed_in_crl"] and body["replacement"]["issued"]
    assert body["user"]["certificate"]["serial"] != body["revoked"]["serial"]
    assert body["revoked"]["revoked_at"] is not None
    crl = x509.load_der_x509_crl(api.client.get("/ca/crl").data)
    assert crl.get_revoked_certificate_by_serial_number(int(body["revoked"]["serial"], 16))
    again = api.call("post", f"/users/{ALICE}/revoke",
                     json={"reason": "superseded", "serial": body["revoked"]["serial"]})
    assert again.status_code == 409
    assert api.call("post", f"/users/{GINA}/revoke",
                    json={"reason": "superseded"}).status_code == 404
    assert api.call("post", f"/users/{ALICE}/revoke",
                    json={"reason": "bored"}).status_code == 422


def test_the_revocation_job_does_not_undo_a_revocation_with_replacement(console):
    # A revoked certificate with a valid successor is left alone by the hourly job.
    old = _issue(console)
    client = console.sign_in(ACME_ADMIN)
    page = f"/console/users/{ALICE}"
    post(client, f"{page}/revoke", {"serial": old.serial, "reason": "superseded",
                                    "replace": "y"}, page=page)
    from keydir import revocation

    later = datetime.now(UTC) + timedelta(minutes=1)
    with console.directory.transaction() as session:
        result = revocation.recheck_own(console.directory, session, later)
        assert result.replaced == []
