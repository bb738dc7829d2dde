"""White label: a tenant's or a reseller's name, colours, logo, portal host and
notification texts, and the brand a tenant shows in effect.

Effective brand of a tenant, value by value: the tenant's own, else its reseller's, else
the neutral sealgate look. One exception: the name. Mails say "Someone at {name} has
sent you a message", which must name the organisation the mail came from, not its
hosting partner: without a name of its own a tenant is called by its display name. A
reseller brands the look (colours, logo, texts), its tenants keep their names.

Rules kept here, whoever calls: colours are plain ``#rrggbb`` (they go into stylesheets
and mail HTML); logos are PNG or JPEG recognised by their first bytes and at most
``MAX_LOGO`` bytes (SVG can carry script, so it is refused); a portal host is a host
name (no port, no IP address) that only one tenant may have. Nothing here reads the
clock: ``now`` is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from keydir.branding_models import BrandProfile
from keydir.errors import Conflict, Refused
from keydir.events import record
from keydir.mailbox_models import LANGUAGES
from keydir.models import Reseller, Tenant
from keydir.tenancy import normalise_domain

NEUTRAL_COLOR = "#1f4e79"
NEUTRAL_TEXT_COLOR = "#ffffff"
MAX_NAME = 200
MAX_INTRO = 1000
MAX_LOGO = 200 * 1024
PNG, JPEG = "image/png", "image/jpeg"
_MAGIC = ((b"\x89PNG\r\n\x1a\n", PNG), (b"\xff\xd8\xff", JPEG))
FIELDS = ("name", "color", "text_color", "portal_host", "notice_intros")


class BrandingRefused(Refused):
    """A value is not acceptable; ``field`` names which one (for the form)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


class HostTaken(Conflict):
    """Another tenant's portal is reached at this host already."""

    field = "portal_host"


@dataclass(frozen=True)
class Owner:
    """Whose branding: exactly one of a tenant and a reseller."""

    tenant: Tenant | None = None
    reseller: Reseller | None = None

    def __post_init__(self) -> None:
        if (self.tenant is None) == (self.reseller is None):
            raise ValueError("a brand belongs to a tenant or to a reseller")

    @property
    def label(self) -> str:
        return self.tenant.name if self.tenant else self.reseller.name  # type: ignore[union-attr]


@dataclass(frozen=True)
class EffectiveBrand:
    name: str
    color: str
    text_color: str
    logo_profile_id: int | None  # the profile whose logo shows (tenant's or reseller's)
    logo_version: int
    portal_host: str  # "": reached at the installation's public URL
    notice_intros: Mapping[str, str] = field(default_factory=dict)

    @property
    def has_logo(self) -> bool:
        return self.logo_profile_id is not None


# --- checks ------------------------------------------------------------------------------


def check_color(value: str, field_name: str = "color") -> str:
    """``#rrggbb`` in lower case, or "" (inherit)."""
    text = value.strip().lower()
    if text and not (len(text) == 7 and text[0] == "#" and
                     all(c in "0123456789abcdef" for c in text[1:])):
        raise BrandingRefused(field_name, f"{value!r} is not a colour: write it as six hex "
                              "digits, a colour like #1f4e79 (or leave it empty)")
    return text


def check_name(value: str) -> str:
    text = " ".join(value.split())
    if len(text) > MAX_NAME:
        raise BrandingRefused("name", f"the name has {len(text)} characters: use at most "
                              f"{MAX_NAME}")
    return text


def check_host(value: str) -> str | None:
    """A host name like secure.acme.example, lower case; None for an empty value."""
    text = value.strip().rstrip(".").lower()
    if not text:
        return None
    try:
        return normalise_domain(text)
    except Refused:
        raise BrandingRefused("portal_host", f"{value!r} is not a host name: write it like "
                              "secure.acme.example (no https://, no port, no path)") from None


def check_intros(values: Mapping[str, str]) -> dict[str, str]:
    intros: dict[str, str] = {}
    for language, text in values.items():
        if language not in LANGUAGES:
            raise BrandingRefused("notice_intros", f"language {language!r} is not offered: "
                                  f"use one of {', '.join(LANGUAGES)}")
        text = "\n".join(line.rstrip() for line in text.strip().splitlines())
        if len(text) > MAX_INTRO:
            raise BrandingRefused(f"intro_{language}", f"the {language} text has {len(text)} "
                                  f"characters: use at most {MAX_INTRO}")
        if text:
            intros[language] = text
    return intros


def logo_type(data: bytes) -> str:
    """The logo's content type from its first bytes, or ``BrandingRefused``."""
    if not data:
        raise BrandingRefused("logo", "the logo file is empty: choose a PNG or JPEG image")
    if len(data) > MAX_LOGO:
        raise BrandingRefused("logo", f"the logo has {len(data) // 1024} KB: use at most "
                              f"{MAX_LOGO // 1024} KB (a small PNG or JPEG, e.g. 400 by 100 "
                              "pixels)")
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    raise BrandingRefused("logo", "the logo is not a PNG or JPEG image (SVG and other "
                          "formats are refused: they can carry script)")


# --- reading ------------------------------------------------------------------------------


def profile_of(session: Session, owner: Owner) -> BrandProfile | None:
    if owner.tenant is not None:
        query = select(BrandProfile).where(BrandProfile.tenant_id == owner.tenant.id)
    else:
        assert owner.reseller is not None
        query = select(BrandProfile).where(BrandProfile.reseller_id == owner.reseller.id)
    return session.scalar(query)


def _reseller_profile(session: Session, tenant: Tenant) -> BrandProfile | None:
    if tenant.reseller_id is None:
        return None
    return session.scalar(select(BrandProfile).where(
        BrandProfile.reseller_id == tenant.reseller_id))


def effective(session: Session, tenant: Tenant) -> EffectiveBrand:
    """What the tenant's portal and mails show (see the module's doc for the order)."""
    own = profile_of(session, Owner(tenant=tenant))
    parent = _reseller_profile(session, tenant)
    chain = [p for p in (own, parent) if p is not None]

    def first(name: str, default: str) -> str:
        return next((getattr(p, name) for p in chain if getattr(p, name)), default)

    with_logo = next((p for p in chain if p.logo_type), None)
    intros = {language: text for language in LANGUAGES
              if (text := next((p.notice_intros.get(language, "") for p in chain
                                if (p.notice_intros or {}).get(language)), ""))}
    return EffectiveBrand(
        name=(own.name if own and own.name else "") or tenant.display_name or tenant.name,
        color=first("color", NEUTRAL_COLOR), text_color=first("text_color", NEUTRAL_TEXT_COLOR),
        logo_profile_id=with_logo.id if with_logo else None,
        logo_version=with_logo.logo_version if with_logo else 0,
        portal_host=(own.portal_host or "") if own else "", notice_intros=intros)


def of_reseller(session: Session, reseller: Reseller) -> EffectiveBrand:
    """What a reseller's tenants show unless they have values of their own."""
    own = profile_of(session, Owner(reseller=reseller))
    has_logo = own is not None and bool(own.logo_type)
    return EffectiveBrand(
        name=(own.name if own and own.name else "") or reseller.display_name or reseller.name,
        color=(own.color if own else "") or NEUTRAL_COLOR,
        text_color=(own.text_color if own else "") or NEUTRAL_TEXT_COLOR,
        logo_profile_id=own.id if own is not None and has_logo else None,
        logo_version=own.logo_version if own is not None and has_logo else 0,
        portal_host="", notice_intros=dict(own.notice_intros or {}) if own else {})


def logo(session: Session, profile_id: int) -> tuple[bytes, str] | None:
    """The logo's bytes and content type."""
    profile = session.scalar(select(BrandProfile).where(BrandProfile.id == profile_id)
                             .options(undefer(BrandProfile.logo)))
    if profile is None or profile.logo is None or not profile.logo_type:
        return None
    return profile.logo, profile.logo_type


def tenant_for_host(session: Session, host: str) -> Tenant | None:
    """The tenant whose portal is reached at ``host`` (a Host header, port removed)."""
    name = host.strip().rstrip(".").lower()
    if not name:
        return None
    return session.scalar(select(Tenant).join(BrandProfile, BrandProfile.tenant_id == Tenant.id)
                          .where(BrandProfile.portal_host == name))


def portal_base(public_url: str, host: str) -> str:
    """Where links to the portal point: the tenant's host with the public URL's scheme
    (the standard port of that scheme), else the public URL itself."""
    public_url = public_url.rstrip("/")
    if not host:
        return public_url
    scheme = public_url.partition("://")[0] if "://" in public_url else "https"
    return f"{scheme}://{host}"


# --- changing -----------------------------------------------------------------------------


def _profile_for_change(session: Session, owner: Owner, now: datetime) -> BrandProfile:
    profile = profile_of(session, owner)
    if profile is None:
        profile = BrandProfile(
            tenant_id=owner.tenant.id if owner.tenant else None,
            reseller_id=owner.reseller.id if owner.reseller else None,
            name="", color="", text_color="", logo_type="", logo_version=0,
            portal_host=None, notice_intros={}, updated_at=now)
        session.add(profile)
    return profile


def checked(owner: Owner, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The changes in their stored form, every value checked (``BrandingRefused``)."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in FIELDS:
            raise BrandingRefused(name, f"unknown branding setting {name!r}: use one of "
                                  f"{', '.join(FIELDS)}")
        if name == "notice_intros":
            if not isinstance(value, Mapping):
                raise BrandingRefused(name, "the notification texts are a text per language")
            values[name] = check_intros(value)
            continue
        if not isinstance(value, str):
            raise BrandingRefused(name, f"{name} is text, not {value!r}")
        if name == "name":
            values[name] = check_name(value)
        elif name in ("color", "text_color"):
            values[name] = check_color(value, name)
        else:
            host = check_host(value)
            if host and owner.tenant is None:
                raise BrandingRefused(name, "a portal host belongs to a tenant: set it on "
                                      "the tenant's branding")
            values[name] = host
    return values


def update(session: Session, owner: Owner, changes: Mapping[str, Any],
           now: datetime) -> dict[str, Any]:
    """Apply checked changes without an audit entry (the caller records one); returns
    what actually changed."""
    values = checked(owner, changes)
    host = values.get("portal_host")
    if host:
        taken = tenant_for_host(session, host)
        if taken is not None and owner.tenant is not None and taken.id != owner.tenant.id:
            raise HostTaken(f"{host} is the portal host of another tenant already: every "
                            "tenant needs a host of its own")
    profile = _profile_for_change(session, owner, now)
    changed = {name: value for name, value in values.items()
               if getattr(profile, name) != value}
    for name, value in changed.items():
        setattr(profile, name, value)
    if changed:
        profile.updated_at = now
    session.flush()
    return changed


def change(session: Session, owner: Owner, changes: Mapping[str, Any], now: datetime,
           actor: str) -> dict[str, Any]:
    """Change branding values (console), audited with what changed."""
    changed = update(session, owner, changes, now)
    if changed:
        record(session, now, "branding.changed", owner.label,
               tenant_id=owner.tenant.id if owner.tenant else None, actor=actor,
               detail={"reseller": owner.reseller.name if owner.reseller else None,
                       **changed})
    return changed


def set_logo(session: Session, owner: Owner, data: bytes, now: datetime,
             actor: str) -> str:
    """Keep a new logo (checked first); returns its content type."""
    content_type = logo_type(data)
    profile = _profile_for_change(session, owner, now)
    profile.logo, profile.logo_type = data, content_type
    profile.logo_version += 1
    profile.updated_at = now
    session.flush()
    record(session, now, "branding.logo-set", owner.label,
           tenant_id=owner.tenant.id if owner.tenant else None, actor=actor,
           detail={"reseller": owner.reseller.name if owner.reseller else None,
                   "type": content_type, "bytes": len(data)})
    return content_type


def remove_logo(session: Session, owner: Owner, now: datetime, actor: str) -> bool:
    profile = profile_of(session, owner)
    if profile is None or not profile.logo_type:
        return False
    profile.logo, profile.logo_type = None, ""
    profile.logo_version += 1
    profile.updated_at = now
    record(session, now, "branding.logo-removed", owner.label,
           tenant_id=owner.tenant.id if owner.tenant else None, actor=actor,
           detail={"reseller": owner.reseller.name if owner.reseller else None})
    return True
