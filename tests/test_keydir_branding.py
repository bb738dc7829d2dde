"""White label in the data layer: the effective brand (own, reseller's, neutral), logo and
host checks, notification links and texts, the policy settings that moved here, and
migration 0009 — on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import zlib
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from keydir import branding, mailbox, resellers, tenancy
from keydir.models import Event
from tests.conftest import message
from tests.keydir_fixtures import both_databases, database_url, directory  # noqa: F401

NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
PUBLIC_URL = "http://127.0.0.1:8080"


def png(size: int = 0) -> bytes:
    """A real 1 by 1 pixel PNG, padded with an ancillary chunk to ``size`` bytes if asked."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    image = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", bytes.fromhex("0000000100000001080200000"
                                                                "0"))
             + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))
    if size > len(image):
        image = image[:-12] + chunk(b"tEXt", b"x" * (size - len(image) - 12)) + image[-12:]
    return image


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64 + b"\xff\xd9"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture
def world(directory):  # noqa: F811
    """Tenants acme (reseller msp's) and globex (direct), each with a domain."""
    with directory.transaction() as session:
        msp = resellers.add_reseller(session, "msp", NOW, "MSP Secure")
        for name, domain in (("acme", "acme.example"), ("globex", "globex.example")):
            tenant = tenancy.add_tenant(session, name, NOW, display_name=f"{name.title()} Ltd")
            tenancy.add_domain(session, tenant, domain, NOW, operator_verified=True)
        tenancy.add_user(session, "alice@acme.example", NOW)
        resellers.assign(session, tenancy.get_tenant(session, "acme"), msp, NOW)
    return directory


def owner(session, name: str) -> branding.Owner:
    return branding.Owner(tenant=tenancy.get_tenant(session, name))


def reseller_owner(session) -> branding.Owner:
    return branding.Owner(reseller=resellers.get_reseller(session, "msp"))


@both_databases
def test_a_tenant_shows_its_own_values_else_its_resellers_else_the_neutral_look(world):
    with world.transaction() as session:
        acme, globex = (tenancy.get_tenant(session, n) for n in ("acme", "globex"))
        neutral = branding.effective(session, acme)
        assert (neutral.name, neutral.color, neutral.text_color, neutral.has_logo) == \
            ("Acme Ltd", branding.NEUTRAL_COLOR, branding.NEUTRAL_TEXT_COLOR, False)
        branding.change(session, reseller_owner(session),
                        {"name": "MSP Secure Mail", "color": "#AA0000",
                         "notice_intros": {"de": "Hallo von MSP", "en": "Hello from MSP"}},
                        NOW, actor="ops@gateway.example")
        branding.set_logo(session, reseller_owner(session), png(), NOW, "ops@gateway.example")
        inherited = branding.effective(session, acme)
        # Colour, logo and texts come from the reseller; the name stays the tenant's.
        assert (inherited.name, inherited.color, inherited.has_logo) == \
            ("Acme Ltd", "#aa0000", True)
        assert inherited.notice_intros == {"de": "Hallo von MSP", "en": "Hello from MSP"}
        assert branding.effective(session, globex).color == branding.NEUTRAL_COLOR
        branding.change(session, owner(session, "acme"),
                        {"name": "ACME Secure", "color": "#0f5c4d",
                         "notice_intros": {"en": "Our own words"}}, NOW, actor="it@acme.example")
        own = branding.effective(session, acme)
        assert (own.name, own.color, own.text_color) == ("ACME Secure", "#0f5c4d", "#ffffff")
        assert own.notice_intros == {"de": "Hallo von MSP", "en": "Our own words"}
        assert own.logo_profile_id == branding.profile_of(session, reseller_owner(session)).id
        data, content_type = branding.logo(session, own.logo_profile_id)
        assert (data, content_type) == (png(), "image/png")
        events = session.scalars(select(Event).where(Event.action.startswith("branding."))
                                 .order_by(Event.id)).all()
        assert [(e.action, e.actor) for e in events] == [
            ("branding.changed", "ops@gateway.example"),
            ("branding.logo-set", "ops@gateway.example"),
            ("branding.changed", "it@acme.example")]


@both_databases
@pytest.mark.parametrize(("data", "says"), [
    (SVG, "not a PNG or JPEG"), (b"GIF89a" + b"\x00" * 40, "not a PNG or JPEG"),
    (b"garbage that is no image", "not a PNG or JPEG"), (b"", "empty"),
    (png(branding.MAX_LOGO + 1), "at most 200 KB"),
])
def test_logos_other_than_small_png_or_jpeg_are_refused(world, data, says):
    with world.transaction() as session:
        with pytest.raises(branding.BrandingRefused, match=says) as refused:
            branding.set_logo(session, owner(session, "acme"), data, NOW, "it@acme.example")
        assert refused.value.field == "logo"
        assert branding.profile_of(session, owner(session, "acme")) is None \
            or not branding.profile_of(session, owner(session, "acme")).logo_type


@both_databases
def test_png_and_jpeg_logos_are_kept_with_their_type_and_a_new_version(world):
    with world.transaction() as session:
        acme = owner(session, "acme")
        assert branding.set_logo(session, acme, png(branding.MAX_LOGO), NOW, "x") == "image/png"
        assert branding.set_logo(session, acme, JPEG, NOW, "x") == "image/jpeg"
        look = branding.effective(session, acme.tenant)
        assert look.logo_version == 2 and branding.logo(session, look.logo_profile_id)[1] == \
            "image/jpeg"
        assert branding.remove_logo(session, acme, NOW, "x")
        assert not branding.effective(session, acme.tenant).has_logo


@both_databases
def test_portal_hosts_are_host_names_and_belong_to_one_tenant(world):
    with world.transaction() as session:
        branding.change(session, owner(session, "acme"), {"portal_host": "Secure.ACME.example."},
                        NOW, "x")
        found = branding.tenant_for_host(session, "secure.acme.example")
        assert found is not None and found.name == "acme"
        # Saving the same host again is fine; another tenant cannot have it.
        branding.change(session, owner(session, "acme"), {"portal_host": "secure.acme.example"},
                        NOW, "x")
        with pytest.raises(branding.HostTaken, match="another tenant"):
            branding.change(session, owner(session, "globex"),
                            {"portal_host": "secure.acme.example"}, NOW, "x")
        for bad in ("https://secure.acme.example", "secure.acme.example:8443",
                    "secure acme", "10.0.0.1", "secure.acme.example/portal"):
            with pytest.raises(branding.BrandingRefused, match="not a host name"):
                branding.change(session, owner(session, "globex"), {"portal_host": bad}, NOW,
                                "x")
        with pytest.raises(branding.BrandingRefused, match="belongs to a tenant"):
            branding.change(session, reseller_owner(session),
                            {"portal_host": "msp.example"}, NOW, "x")
        assert branding.tenant_for_host(session, "globex.example") is None


@both_databases
def test_colours_names_and_texts_are_checked(world):
    with world.transaction() as session:
        acme = owner(session, "acme")
        for changes, field in (({"color": "red;background:url(x)"}, "color"),
                               ({"text_color": "#fff"}, "text_color"),
                               ({"name": "x" * 201}, "name"),
                               ({"notice_intros": {"es": "Hola"}}, "notice_intros"),
                               ({"notice_intros": {"en": "x" * 1001}}, "intro_en"),
                               ({"logo": b""}, "logo")):
            with pytest.raises(branding.BrandingRefused) as refused:
                branding.change(session, acme, changes, NOW, "x")
            assert refused.value.field == field


def _notice_text(notice: mailbox.Notice) -> str:
    mail = email.message_from_bytes(notice.data, policy=email.policy.default)
    return mail.get_body(("plain",)).get_content()


@both_databases
def test_a_notification_links_to_the_tenants_host_and_starts_with_its_own_text(world):
    with world.transaction() as session:
        acme = owner(session, "acme")
        branding.change(session, acme, {"portal_host": "secure.acme.example",
                                        "notice_intros": {"en": "ACME protects your data."}},
                        NOW, "it@acme.example")
        notices = mailbox.deposit(session, world.master_key, tenant_id=acme.tenant.id,
                                  mail_from="alice@acme.example",
                                  recipients=["eve@partner.example"],
                                  data=message("alice@acme.example", "eve@partner.example"),
                                  now=NOW, public_url=PUBLIC_URL)
    plain = _notice_text(notices[0])
    assert "http://secure.acme.example/portal/register/" in plain
    assert "http://secure.acme.example/portal/login" in plain
    assert PUBLIC_URL not in plain
    assert plain.index("ACME protects your data.") < plain.index("has sent you a message")


@both_databases
def test_a_tenant_without_a_host_keeps_the_public_url(world):
    with world.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        (notice, *_) = mailbox.deposit(
            session, world.master_key, tenant_id=tenant.id, mail_from="alice@acme.example",
            recipients=["eve@partner.example"],
            data=message("alice@acme.example", "eve@partner.example"), now=NOW,
            public_url=PUBLIC_URL)
    assert f"{PUBLIC_URL}/portal/register/" in _notice_text(notice)
    assert branding.portal_base("https://mail.example/", "secure.acme.example") == \
        "https://secure.acme.example"


@both_databases
def test_the_policy_settings_brand_name_and_brand_color_live_in_the_brand(world):
    with world.transaction() as session:
        tenant = tenancy.get_tenant(session, "acme")
        mailbox.set_policy(session, tenant.id, NOW, brand_name="ACME Secure",
                           brand_color="#112233", retention_days=30)
        profile = branding.profile_of(session, branding.Owner(tenant=tenant))
        assert (profile.name, profile.color) == ("ACME Secure", "#112233")
        values = mailbox.settings(session, tenant.id)
        assert (values["brand_name"], values["brand_color"], values["retention_days"]) == \
            ("ACME Secure", "#112233", 30)
        assert list(values) == list(mailbox.POLICY_DEFAULTS)
        with pytest.raises(mailbox.PortalError, match="unknown portal setting"):
            mailbox.set_policy(session, tenant.id, NOW, now="x")


@both_databases
def test_migration_0009_moves_the_brand_matches_the_models_and_goes_back_down(
        database_url):  # noqa: F811
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from keydir.db import _alembic_config, make_engine
    from keydir.models import Base

    engine = make_engine(database_url)
    config = _alembic_config(engine)
    command.upgrade(config, "0008")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO tenants (id, name, display_name, created_at) "
            "VALUES (7, 'acme', 'ACME Ltd', '2026-11-01 00:00:00')"))
        connection.execute(text(
            "INSERT INTO portal_policies (tenant_id, default_language, registration, "
            "notify_shows_sender, notify_shows_subject, retention_days, max_message_bytes, "
            "stay_signed_in_days, sender_receipts, brand_name, brand_color) VALUES "
            "(7, 'en', 'link', true, true, 90, 1024, 30, true, 'ACME Corp', '#0F5C4D')"))
    command.upgrade(config, "head")
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        moved = connection.execute(text(
            "SELECT tenant_id, name, color FROM brand_profiles")).all()
    ours = ("'brand_profiles'", "'portal_policies'")
    assert [d for d in differences if any(table in repr(d) for table in ours)] == []
    assert [tuple(row) for row in moved] == [(7, "ACME Corp", "#0f5c4d")]
    assert "brand_name" not in {c["name"] for c in inspect(engine).get_columns("portal_policies")}
    command.downgrade(config, "0008")
    assert "brand_profiles" not in set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        assert tuple(connection.execute(text(
            "SELECT brand_name, brand_color FROM portal_policies")).one()) == \
            ("ACME Corp", "#0f5c4d")
    command.upgrade(config, "head")
    assert "brand_profiles" in set(inspect(engine).get_table_names())
    engine.dispose()

