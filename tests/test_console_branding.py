"""The branding page: a tenant's look saved with its audit entry, refusals that keep what
was typed, scope (another tenant's branding is not found, a reseller's is for operators),
the preview's stylesheet and logo, and the portal branded by its Host header and logo."""

from __future__ import annotations

import html
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from keydir import branding, resellers
from keydir.models import Event, Tenant
from keydir.service import Directory
from tests.console_helpers import (
    ACME_ADMIN,
    OPERATOR_ADDRESS,
    Console,
    make_console,
    post,
)
from tests.keydir_fixtures import database_url, directory  # noqa: F401
from tests.test_keydir_branding import SVG, png


@pytest.fixture
def console(directory: Directory) -> Console:  # noqa: F811
    return make_console(directory)


def console_now() -> datetime:
    return datetime.now(UTC)


def page_of(console: Console, tenant: str) -> str:
    return f"/console/branding/tenant/{console.tenant_ids[tenant]}"


def text(answer) -> str:
    return html.unescape(answer.get_data(as_text=True))


def form(**values: object) -> dict[str, object]:
    return {"name": "", "color": "", "text_color": "", "portal_host": "", "intro_de": "",
            "intro_en": "", "intro_fr": "", "intro_it": "", **values}


def test_a_tenant_admin_saves_the_look_and_the_audit_log_names_them(console):
    client = console.sign_in(ACME_ADMIN)
    assert client.get("/console/branding/").location.endswith(page_of(console, "acme"))
    answer = post(client, page_of(console, "acme"), form(
        name="ACME Secure", color="#0F5C4D", portal_host="secure.acme.example",
        intro_en="ACME protects your data.",
        logo=(io.BytesIO(png()), "logo.png")), content_type="multipart/form-data")
    assert answer.status_code == 302, text(answer)
    page = text(client.get(page_of(console, "acme")))
    assert "Branding saved." in page and 'value="ACME Secure"' in page
    assert "ACME protects your data." in page  # the mail preview
    assert "http://secure.acme.example/portal/register/" in page
    css = client.get(page_of(console, "acme") + "/preview.css").get_data(as_text=True)
    assert "--preview-brand:#0f5c4d" in css
    logo = client.get(page_of(console, "acme") + "/logo")
    assert (logo.status_code, logo.mimetype, logo.get_data()) == (200, "image/png", png())
    with console.directory.transaction() as db:
        actions = [(e.action, e.actor) for e in db.scalars(
            select(Event).where(Event.action.startswith("branding.")).order_by(Event.id))]
    assert actions == [("branding.changed", ACME_ADMIN), ("branding.logo-set", ACME_ADMIN)]


def test_a_refused_logo_saves_nothing_and_keeps_what_was_typed(console):
    client = console.sign_in(ACME_ADMIN)
    answer = post(client, page_of(console, "acme"), form(
        name="Typed name", color="#123456", logo=(io.BytesIO(SVG), "logo.svg")),
        content_type="multipart/form-data")
    page = text(answer)
    assert answer.status_code == 200 and "not a PNG or JPEG" in page
    assert 'value="Typed name"' in page and 'value="#123456"' in page
    with console.directory.transaction() as db:
        tenant = db.get(Tenant, console.tenant_ids["acme"])
        assert branding.effective(db, tenant).name == "Acme Ltd"


def test_a_bad_colour_or_a_taken_host_is_explained_at_the_field(console):
    with console.directory.transaction() as db:
        globex = db.get(Tenant, console.tenant_ids["globex"])
        branding.change(db, branding.Owner(tenant=globex),
                        {"portal_host": "secure.globex.example"}, console_now(), "x")
    client = console.sign_in(ACME_ADMIN)
    page = text(post(client, page_of(console, "acme"), form(color="blue")))
    assert "six hex digits" in page
    page = text(post(client, page_of(console, "acme"),
                     form(name="Kept", portal_host="secure.globex.example")))
    assert "another tenant" in page and 'value="Kept"' in page


def test_a_tenant_admin_cannot_open_another_tenants_or_a_resellers_branding(console):
    with console.directory.transaction() as db:
        reseller_id = resellers.add_reseller(db, "msp", console_now()).id
    client = console.sign_in(ACME_ADMIN)
    for path in (page_of(console, "globex"), page_of(console, "globex") + "/preview.css",
                 page_of(console, "globex") + "/logo"):
        assert client.get(path).status_code == 404, path
    answer = post(client, page_of(console, "globex"), form(name="Hijacked"),
                  page=page_of(console, "acme"))
    assert answer.status_code == 404
    assert client.get(f"/console/branding/reseller/{reseller_id}").status_code == 403
    with console.directory.transaction() as db:
        globex = db.get(Tenant, console.tenant_ids["globex"])
        assert branding.effective(db, globex).name == "Globex Ltd"


def test_an_operator_brands_a_reseller_and_its_tenants_inherit_the_look(console):
    with console.directory.transaction() as db:
        msp = resellers.add_reseller(db, "msp", console_now(), "MSP Secure")
        resellers.assign(db, db.get(Tenant, console.tenant_ids["acme"]), msp, console_now())
        reseller_id = msp.id
    client = console.sign_in(OPERATOR_ADDRESS)
    chooser = text(client.get("/console/branding/"))
    assert "MSP Secure" in chooser and "Acme Ltd" in chooser
    path = f"/console/branding/reseller/{reseller_id}"
    page = text(client.get(path))
    assert "portal_host" not in page  # hosts belong to tenants
    answer = post(client, path, form(color="#aa0000", intro_de="Grüezi von MSP"))
    assert answer.status_code == 302, text(answer)
    css = client.get(page_of(console, "acme") + "/preview.css").get_data(as_text=True)
    assert "--preview-brand:#aa0000" in css
    assert "Grüezi von MSP" in text(client.get(page_of(console, "acme") + "?language=de"))
    assert "#aa0000" not in client.get(page_of(console, "globex") + "/preview.css") \
        .get_data(as_text=True)


def test_the_portal_brands_itself_by_the_host_it_is_reached_at(console):
    with console.directory.transaction() as db:
        for name, host, colour in (("acme", "secure.acme.example", "#0f5c4d"),
                                   ("globex", "mail.globex.example", "#551a8b")):
            tenant = db.get(Tenant, console.tenant_ids[name])
            branding.change(db, branding.Owner(tenant=tenant),
                            {"name": f"{name.upper()} Secure", "color": colour,
                             "portal_host": host}, console_now(), "x")
        branding.set_logo(db, branding.Owner(tenant=db.get(Tenant, console.tenant_ids["acme"])),
                          png(), console_now(), "x")
    client = console.client()
    acme = text(client.get("/portal/login", headers={"Host": "secure.acme.example"}))
    assert "ACME Secure" in acme and "GLOBEX" not in acme
    assert "/portal/logo?tenant=acme&v=1" in acme
    css = client.get("/portal/brand.css", headers={"Host": "secure.acme.example:443"})
    assert "--brand:#0f5c4d" in css.get_data(as_text=True)
    globex = text(client.get("/portal/login", headers={"Host": "mail.globex.example"}))
    assert "GLOBEX Secure" in globex
    assert "sealgate" in text(client.get("/portal/login", headers={"Host": "other.example"}))
    logo = client.get("/portal/logo", headers={"Host": "secure.acme.example"})
    assert (logo.status_code, logo.mimetype, logo.get_data()) == (200, "image/png", png())
    assert logo.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age" in logo.headers["Cache-Control"]
    assert client.get("/portal/logo", headers={"Host": "mail.globex.example"}).status_code \
        == 404
