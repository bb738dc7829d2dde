"""The web portal under test: a tenant, mail deposited for external recipients, a client.

Mail reaches the portal as the relay hands it over (``mailbox.deposit``); the links come
out of the real notification mails; the web app is the real one with CSRF switched on,
so every form post carries the token its page handed out.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient

from keydir import mailbox, tenancy
from keydir.service import Directory
from portal.app import create_app

PUBLIC_URL = "http://127.0.0.1:8080"
ALICE = "alice@example.com"  # internal sender
CAROL = "carol@example.com"  # internal colleague
BOB = "bob@partner.example"  # external recipient, no S/MIME
DAVE = "dave@other.example"  # another external recipient
PASSWORD = "correct horse battery 7"
_CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
_CSRF_PLAIN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Portal:
    directory: Directory
    tenant_id: int

    def deposit(self, data: bytes, recipients: list[str], mail_from: str = ALICE,
                now: datetime | None = None) -> list[mailbox.Notice]:
        with self.directory.transaction() as session:
            return mailbox.deposit(session, self.directory.master_key,
                                   tenant_id=self.tenant_id, mail_from=mail_from,
                                   recipients=recipients, data=data,
                                   now=now or datetime.now(UTC), public_url=PUBLIC_URL)


def make_portal(directory: Directory, now: datetime | None = None) -> Portal:
    now = now or datetime.now(UTC)
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", now, display_name="ACME Corp")
        tenancy.add_domain(session, tenant, "example.com", now, operator_verified=True)
        return Portal(directory, tenant.id)


def make_app(directory: Directory, **settings: object) -> Flask:
    config = {"TESTING": True, "SECRET_KEY": "test", **settings}
    return create_app(config, directory=directory)


def outbox(directory: Directory) -> list[mailbox.TakenNotice]:
    """The portal's own mails waiting for the relay, taken as the relay takes them."""
    with directory.transaction() as session:
        return mailbox.take_notices(session, directory.master_key)


def text_of(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=email.policy.default)
    body = message.get_body(("plain",))  # type: ignore[attr-defined]
    return str(body.get_content())


def link(notice_data: bytes, kind: str) -> str:
    """The path of the ``kind`` link (register, reset, m) in a notice mail."""
    found = re.search(rf"{re.escape(PUBLIC_URL)}(/portal/{kind}/[A-Za-z0-9_-]+)",
                      text_of(notice_data))
    assert found, f"no /portal/{kind}/ link in the notice"
    return found.group(1)


def csrf(html: str) -> str:
    found = _CSRF.search(html) or _CSRF_PLAIN.search(html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def post_form(client: FlaskClient, path: str, data: dict[str, object],
              page: str | None = None, **kwargs: object):
    """Fetch the form's page for its CSRF token, then post the form."""
    html = client.get(page or path).get_data(as_text=True)
    return client.post(path, data={"csrf_token": csrf(html), **data}, **kwargs)


def register(client: FlaskClient, register_path: str, password: str = PASSWORD):
    return post_form(client, register_path, {"password": password, "confirm": password})


def login(client: FlaskClient, address: str, password: str = PASSWORD,
          remember: bool = False, tenant: str = ""):
    data: dict[str, object] = {"address": address, "password": password, "tenant": tenant}
    if remember:
        data["remember"] = "y"
    return post_form(client, "/portal/login", data)


def message_ids(html: str) -> list[str]:
    return re.findall(r'href="/portal/m/([A-Za-z0-9_-]+)"', html)


def mail(subject: str = "Quarterly numbers", body: str = "Hello Bob,\r\nthe numbers.\r\n",
         sender: str = ALICE, to: str = BOB, cc: str = "", html: str | None = None,
         attachment: tuple[str, str, bytes] | None = None) -> bytes:
    """A message as the organisation's server would send it."""
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    message["From"] = f"Alice Example <{sender}>"
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = "Sat, 28 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = f"<{abs(hash(subject))}@example.com>"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        name, content_type, content = attachment
        maintype, _, subtype = content_type.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()
