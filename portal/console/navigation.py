"""The console's sections, in the order the sidebar shows them.

A section appears once its blueprint is registered (its endpoint exists); operator-only
sections are hidden from tenant administrators (their views refuse them anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from flask_babel import lazy_gettext as _l

from portal.console.core import Admin


@dataclass(frozen=True)
class Section:
    key: str  # pages name it as ``active``
    endpoint: str
    label: object  # a lazy translation
    operator_only: bool = False


SECTIONS = (
    Section("dashboard", "console_dashboard.page", _l("Overview")),
    Section("domains", "console_domains.list_domains", _l("Domains")),
    Section("users", "console_users.list_users", _l("Users")),
    Section("certificates", "console_certificates.list_certificates", _l("Certificates")),
    Section("trust", "console_trust.list_anchors", _l("Trust anchors")),
    Section("policies", "console_policies.page", _l("Policies")),
    Section("queue", "console_queue.page", _l("Queue")),
    Section("log", "console_log.messages", _l("Message log")),
    Section("audit", "console_log.audit", _l("Audit log")),
    Section("operations", "console_bulk.list_operations", _l("Bulk operations")),
    Section("usage", "console_usage.page", _l("Usage and billing")),
    Section("branding", "console_branding.page", _l("Branding")),
    Section("tenants", "console_tenants.list_tenants", _l("Tenants"), operator_only=True),
)


def sections_for(who: Admin) -> list[Section]:
    views = current_app.view_functions
    return [s for s in SECTIONS if s.endpoint in views and (who.operator or not s.operator_only)]
