"""The portal's store (keydir.mailbox): sealing, tokens, sign-in, isolation, retention."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import event, text

from keydir import certificates, jobs, mailbox, tenancy, trust
from keydir.mailbox_models import PortalAccount, PortalMessage
from tests.conftest import message
from tests.keydir_fixtures import both_databases

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
URL = "https://mail.example.com"
BODY = b"The merger closes on Friday; keep this to yourself.\r\n"
PASSWORD = "Correct-Horse-42"


def secret_mail(to: str = "eve@partner.example") -> bytes:
    return message(to=to, body=BODY).replace(b"Quarterly numbers", b"Project Nightingale")


@pytest.fixture
def tenant_id(directory):
    with directory.transaction() as session:
        tenant = tenancy.add_tenant(session, "acme", NOW, display_name="ACME Ltd")
        tenancy.add_domain(session, tenant, "example.com", NOW, operator_verified=True)
        tenancy.add_user(session, "alice@example.com", NOW)
        return tenant.id


def deposit(directory, tenant_id, to=("eve@partner.example",), now=NOW, data=None):
    with directory.transaction() as session:
        return mailbox.deposit(session, directory.master_key, tenant_id=tenant_id,
                               mail_from="alice@example.com", recipients=list(to),
                               data=data or secret_mail(to[0]), now=now, public_url=URL)


def parsed(notice: mailbox.Notice) -> email.message.EmailMessage:
    return email.message_from_bytes(notice.data, policy=email.policy.default)


def texts(notice: mailbox.Notice) -> tuple[str, str]:
    mail = parsed(notice)
    return (mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content())


def link(notice: mailbox.Notice, kind: str) -> str:
    plain, _ = texts(notice)
    match = re.search(rf"{re.escape(URL)}/portal/{kind}/(\S+)", plain)
    assert match, plain
    return match.group(1)


def registered(directory, tenant_id, address="eve@partner.example", password=PASSWORD):
    (notice, *_) = deposit(directory, tenant_id, to=(address,))
    with directory.transaction() as session:
        return mailbox.register(session, link(notice, "register"), password, NOW).id


def account(session, account_id) -> PortalAccount:
    found = mailbox.get_account(session, account_id)
    assert found is not None
    return found


@both_databases
def test_deposit_seals_content_and_notifies_without_it(directory, tenant_id):
    notices = deposit(directory, tenant_id)
    notification, receipt = notices
    assert notification.recipients == ["eve@partner.example"] and not notification.internal
    assert notification.mail_from == "alice@example.com"  # bounces reach the sender
    mail = parsed(notification)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Subject"] == "Secure message from Alice"
    plain, html = texts(notification)
    assert "Project Nightingale" in plain and "Alice <alice@example.com>" in plain
    assert "merger" not in plain and "merger" not in html
    assert "Alice &lt;alice@example.com&gt;" in html and "ACME Ltd" in html
    assert link(notification, "register")
    # The internal sender learns where the mail went (to the next hop, not the internet).
    assert receipt.internal and receipt.recipients == ["alice@example.com"]
    assert receipt.mail_from == ""
    assert "eve@partner.example" in texts(receipt)[0]

    with directory.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM portal_messages")).all()
    assert len(rows) == 1
    raw = b"".join(value if isinstance(value, bytes) else str(value).encode()
                   for value in rows[0])
    assert b"Project Nightingale" not in raw and b"merger" not in raw
    with directory.transaction() as session:
        row = session.query(PortalMessage).one()
        opened = directory.master_key.open(row.data_sealed, f"portal-message:{row.public_id}")
        assert BODY in opened and len(row.public_id) == 22


@both_databases
def test_tokens_are_stored_hashed_used_once_and_expire(directory, tenant_id):
    (notice, _) = deposit(directory, tenant_id)
    token = link(notice, "register")
    with directory.engine.connect() as connection:
        stored = [r[0] for r in connection.execute(text("SELECT token_hash FROM portal_tokens"))]
    assert token not in " ".join(stored)
    assert hashlib.sha256(token.encode()).hexdigest() in stored

    with directory.transaction() as session, pytest.raises(mailbox.TokenExpired):
        mailbox.register(session, token, PASSWORD, NOW + timedelta(days=15))
    # The next notification brings a fresh link that works.
    (later, _) = deposit(directory, tenant_id, now=NOW + timedelta(days=15))
    fresh = link(later, "register")
    assert fresh != token
    with directory.transaction() as session:
        registered_account = mailbox.register(session, fresh, PASSWORD, NOW + timedelta(days=15))
        assert registered_account.registered_at == NOW + timedelta(days=15)
    with directory.transaction() as session, pytest.raises(mailbox.TokenInvalid):
        mailbox.register(session, fresh, PASSWORD, NOW + timedelta(days=15))
    with directory.transaction() as session, pytest.raises(mailbox.TokenInvalid):
        mailbox.register(session, "not-a-token", PASSWORD, NOW)
    # Once registered, notifications link to the message, not to a registration.
    (third, _) = deposit(directory, tenant_id, now=NOW + timedelta(days=16))
    assert link(third, "m")


def test_weak_passwords_are_refused_with_a_reason(directory, tenant_id):
    (notice, _) = deposit(directory, tenant_id)
    token = link(notice, "register")
    Reason = mailbox.Reason
    for weak, reason, params in (
            ("short1!", Reason.PASSWORD_TOO_SHORT, {"minimum": 10}),
            ("x1" * 513, Reason.PASSWORD_TOO_LONG, {"maximum": 1024}),
            ("eve@partner.example1", Reason.PASSWORD_HAS_ADDRESS, {}),
            ("Password123", Reason.PASSWORD_COMMON, {}),
            ("aaaaaaaaaaaa", Reason.PASSWORD_FEW_CHARACTERS, {"minimum": 5}),
            ("onlylowercase", Reason.PASSWORD_ONE_KIND, {"passphrase": 16})):
        with directory.transaction() as session, pytest.raises(mailbox.WeakPassword) as refused:
            mailbox.register(session, token, weak, NOW)
        assert (refused.value.reason, refused.value.params) == (reason, params)
        assert str(refused.value)  # the English sentence stays, for logs and the API
    with directory.transaction() as session:
        mailbox.register(session, token, "a long passphrase of words", NOW)


@both_databases
def test_lockout_after_five_failures_growing(directory, tenant_id):
    registered(directory, tenant_id)

    def attempt(password, now):
        with directory.transaction() as session:
            try:
                return mailbox.authenticate(session, "Eve@Partner.example", password, now)
            except mailbox.PortalError as exc:
                return exc  # committed: the failure counts

    for _ in range(4):
        assert isinstance(attempt("wrong password", NOW), mailbox.LoginFailed)
    locked = attempt("wrong password", NOW)
    assert isinstance(locked, mailbox.AccountLocked)
    assert locked.until == NOW + timedelta(minutes=15)
    # Locked: even the right password does not get in, and is not checked.
    assert isinstance(attempt(PASSWORD, NOW + timedelta(minutes=14)), mailbox.AccountLocked)
    later = NOW + timedelta(minutes=16)
    for _ in range(4):
        assert isinstance(attempt("wrong again", later), mailbox.LoginFailed)
    second = attempt("wrong again", later)
    assert isinstance(second, mailbox.AccountLocked)
    assert second.until == later + timedelta(minutes=30)
    signed_in = attempt(PASSWORD, later + timedelta(minutes=31))
    assert isinstance(signed_in, PortalAccount) and signed_in.failed_logins == 0


def test_no_enumeration(directory, tenant_id):
    registered(directory, tenant_id)
    with directory.transaction() as session:
        answers = []
        for address, password in (("nobody@partner.example", PASSWORD),
                                  ("eve@partner.example", "wrong password"),
                                  ("not an address", PASSWORD)):
            with pytest.raises(mailbox.LoginFailed) as failed:
                mailbox.authenticate(session, address, password, NOW)
            answers.append(str(failed.value))
        assert len(set(answers)) == 1
        mailbox.request_reset(session, directory.master_key, tenant_id,
                              "nobody@partner.example", NOW, URL)
        assert mailbox.take_notices(session, directory.master_key) == []  # nothing, no hint
        mailbox.request_reset(session, directory.master_key, tenant_id, "eve@partner.example",
                              NOW, URL)
    # The link waits in the outbox, sealed: the row alone does not give it away.
    with directory.engine.connect() as connection:
        (row,) = connection.execute(text("SELECT * FROM portal_outbox")).all()
    with directory.transaction() as session:
        (reset,) = mailbox.take_notices(session, directory.master_key)
    token = link(reset, "reset")
    assert (reset.kind, reset.recipients, reset.internal) == (
        "reset", ["eve@partner.example"], False)
    raw = b"".join(value if isinstance(value, bytes) else str(value).encode() for value in row)
    assert token.rsplit("/", 1)[-1].encode() not in raw and b"/portal/reset/" not in raw
    with directory.transaction() as session, pytest.raises(mailbox.TokenExpired):
        mailbox.reset_password(session, token, "Another-Pass-77", NOW + timedelta(hours=2))
    with directory.transaction() as session:
        before = mailbox.authenticate(session, "eve@partner.example", PASSWORD, NOW)
        epoch = before.session_epoch
        after = mailbox.reset_password(session, token, "Another-Pass-77", NOW)
        assert after.session_epoch == epoch + 1  # every old session is signed out
        assert mailbox.authenticate(session, "eve@partner.example", "Another-Pass-77", NOW)


@both_databases
def test_another_accounts_message_is_not_found(directory, tenant_id):
    eve_id = registered(directory, tenant_id, "eve@partner.example")
    mallory_id = registered(directory, tenant_id, "mallory@partner.example")
    with directory.transaction() as session:
        eve, mallory = account(session, eve_id), account(session, mallory_id)
        (eves,) = mailbox.inbox(session, eve, master_key=directory.master_key)
        assert mailbox.inbox(session, mallory, master_key=directory.master_key)[0].public_id != (
            eves.public_id)
        with pytest.raises(mailbox.NotFound):
            mailbox.open_message(session, directory.master_key, mallory, eves.public_id, NOW)
        with pytest.raises(mailbox.NotFound):
            mailbox.delete_message(session, mallory, eves.public_id)
        with pytest.raises(mailbox.NotFound):
            mailbox.compose(session, directory.master_key, mallory, to=["alice@example.com"],
                            cc=[], subject="Re", body_text="hi", attachments=[],
                            in_reply_to=eves.public_id, now=NOW)
        opened = mailbox.open_message(session, directory.master_key, eve, eves.public_id, NOW)
        assert BODY in opened.data and opened.summary.subject == "Project Nightingale"


def test_read_receipt_once_and_inbox_search_and_sort(directory, tenant_id):
    eve_id = registered(directory, tenant_id)
    with directory.transaction() as session:
        mailbox.deposit(session, directory.master_key, tenant_id=tenant_id,
                        mail_from="alice@example.com", recipients=["eve@partner.example"],
                        data=message(to="eve@partner.example").replace(
                            b"From: Alice", b"From: Zoe"),
                        now=NOW + timedelta(hours=1), public_url=URL)
        eve = account(session, eve_id)
        listed = mailbox.inbox(session, eve, master_key=directory.master_key)
        assert [s.subject for s in listed] == ["Quarterly numbers", "Project Nightingale"]
        assert all(s.unread for s in listed)
        by_sender = mailbox.inbox(session, eve, sort="sender", descending=False,
                                  master_key=directory.master_key)
        assert [s.sender_name for s in by_sender] == ["Alice", "Zoe"]
        (found,) = mailbox.inbox(session, eve, query="nightin", master_key=directory.master_key)
        mailbox.open_message(session, directory.master_key, eve, found.public_id, NOW)
        (receipt,) = mailbox.take_notices(session, directory.master_key)
        assert receipt.internal and receipt.recipients == ["alice@example.com"]
        assert receipt.kind == "read_receipt" and receipt.mail_from == ""
        assert "eve@partner.example" in texts(receipt)[0]
        again = mailbox.open_message(session, directory.master_key, eve, found.public_id, NOW)
        assert mailbox.take_notices(session, directory.master_key) == []  # read once only
        assert not again.summary.unread
        assert mailbox.unread_count(session, eve) == 1


@both_databases
def test_compose_only_to_internal_recipients_then_taken_by_the_relay(directory, tenant_id):
    eve_id = registered(directory, tenant_id)
    with directory.transaction() as session:
        eve = account(session, eve_id)
        (original,) = mailbox.inbox(session, eve, master_key=directory.master_key)
        with pytest.raises(mailbox.RecipientNotAllowed) as outside:
            mailbox.compose(session, directory.master_key, eve, to=["friend@gmail.example"],
                            cc=[], subject="Fwd", body_text="look", attachments=[],
                            in_reply_to=None, now=NOW)
        assert outside.value.reason is mailbox.Reason.RECIPIENT_OUTSIDE
        assert outside.value.params == {"address": "friend@gmail.example",
                                        "domains": ["example.com"]}
        with pytest.raises(mailbox.RecipientNotAllowed) as nobody:
            mailbox.compose(session, directory.master_key, eve, to=[], cc=[], subject="x",
                            body_text="x", attachments=[], in_reply_to=None, now=NOW)
        assert nobody.value.reason is mailbox.Reason.RECIPIENT_MISSING
        sent = mailbox.compose(
            session, directory.master_key, eve, to=["Alice@example.com"], cc=[],
            subject="Re: Project Nightingale", body_text="Understood — not a word.",
            attachments=[("plan ü.pdf", "application/pdf", b"%PDF-1.4 plan")],
            in_reply_to=original.public_id, now=NOW)
        assert (sent.folder, sent.state) == ("sent", "outgoing")
        (listed,) = mailbox.inbox(session, eve, folder="sent", master_key=directory.master_key)
        assert listed.subject == "Re: Project Nightingale" and listed.to == ["alice@example.com"]
    with directory.transaction() as session:
        (outgoing,) = mailbox.take_outgoing(session, directory.master_key, limit=10)
        assert mailbox.take_outgoing(session, directory.master_key, limit=10) == []
    assert outgoing.mail_from == "eve@partner.example"
    assert outgoing.recipients == ["alice@example.com"]
    mail = email.message_from_bytes(outgoing.data, policy=email.policy.default)
    assert mail["X-Sealgate-Portal"] == "sent via the secure web portal"
    assert mail["In-Reply-To"] == "<1@example.com>"
    (attachment,) = mail.iter_attachments()
    assert attachment.get_filename() == "plan ü.pdf"
    assert attachment.get_content() == b"%PDF-1.4 plan"
    assert b"\r\n" in outgoing.data
    with directory.transaction() as session:
        assert session.query(PortalMessage).filter_by(folder="sent").one().state == "submitted"


def test_size_limit_and_policy_options(directory, tenant_id):
    with directory.transaction() as session:
        rules = mailbox.policy(session, tenant_id)
        assert (rules.retention_days, rules.default_language) == (90, "en")
        rules.max_message_bytes = 100
    with pytest.raises(mailbox.TooLarge) as too_large:
        deposit(directory, tenant_id)
    assert "at most" in str(too_large.value)
    with directory.transaction() as session:
        rules = mailbox.policy(session, tenant_id)
        rules.max_message_bytes = 10_000
        rules.notify_shows_sender = rules.notify_shows_subject = False
        rules.sender_receipts = False
        rules.default_language = "fr"
        mailbox.set_policy(session, tenant_id, NOW, brand_name="Acme Secure")
    (notice,) = deposit(directory, tenant_id)
    plain, html = texts(notice)
    assert "Vous avez reçu un message sécurisé" in plain and "Acme Secure" in html
    assert "Alice" not in plain and "Nightingale" not in plain
    assert parsed(notice)["Subject"] == "Vous avez reçu un message sécurisé"
    assert parsed(notice)["Content-Language"] == "fr"


@pytest.mark.parametrize(("language", "phrase"), [
    ("de", "Sie haben eine sichere Nachricht erhalten"),
    ("en", "You have received a secure message"),
    ("fr", "Vous avez reçu un message sécurisé"),
    ("it", "Ha ricevuto un messaggio sicuro"),
])
def test_notification_in_the_recipients_language(directory, tenant_id, language, phrase):
    eve_id = registered(directory, tenant_id)
    with directory.transaction() as session:
        mailbox.set_language(session, account(session, eve_id), language)
    (notice, _) = deposit(directory, tenant_id)
    plain, html = texts(notice)
    assert phrase in plain and phrase in html
    assert f'lang="{language}"' in html


def test_sender_password_registration(directory, tenant_id):
    with directory.transaction() as session:
        mailbox.policy(session, tenant_id).registration = "sender-password"
    notification, to_sender = deposit(directory, tenant_id)
    token = link(notification, "register")
    one_time = re.search(r"eve@partner\.example: (\S+)", texts(to_sender)[0]).group(1)
    assert one_time not in notification.data.decode()
    with directory.transaction() as session, pytest.raises(mailbox.SenderPasswordRequired):
        mailbox.register(session, token, PASSWORD, NOW)
    with directory.transaction() as session, pytest.raises(mailbox.SenderPasswordRequired):
        mailbox.register(session, token, PASSWORD, NOW, sender_password="AAAA-BBBB-CCCC-DDDD")
    spoken = one_time.replace("-", " ").lower()  # as typed after a phone call
    with directory.transaction() as session:
        assert mailbox.register(session, token, PASSWORD, NOW, sender_password=spoken)


def test_totp_and_log_out_everywhere(directory, tenant_id):
    eve_id = registered(directory, tenant_id)
    secret = mailbox.new_totp_secret()
    code = pyotp.TOTP(secret).at(int(NOW.timestamp()))
    with directory.transaction() as session:
        eve = account(session, eve_id)
        with pytest.raises(mailbox.CodeInvalid):
            mailbox.enable_totp(session, directory.master_key, eve, secret, "000000", NOW)
        mailbox.enable_totp(session, directory.master_key, eve, secret, code, NOW)
        assert secret.encode() not in eve.totp_secret_sealed
        assert mailbox.verify_totp(directory.master_key, eve, code, NOW + timedelta(seconds=20))
        assert not mailbox.verify_totp(directory.master_key, eve, code, NOW + timedelta(hours=1))
        assert mailbox.totp_uri(eve, secret, "ACME").startswith("otpauth://totp/")
        epoch = eve.session_epoch
        mailbox.log_out_everywhere(session, eve, NOW)
        assert eve.session_epoch == epoch + 1
        mailbox.disable_totp(session, eve)
        assert not eve.has_totp


def test_same_address_at_two_tenants_needs_the_tenant(directory, tenant_id):
    registered(directory, tenant_id)
    with directory.transaction() as session:
        other = tenancy.add_tenant(session, "globex", NOW)
        tenancy.add_domain(session, other, "globex.example", NOW, operator_verified=True)
        notices = mailbox.deposit(session, directory.master_key, tenant_id=other.id,
                                  mail_from="bob@globex.example",
                                  recipients=["eve@partner.example"],
                                  data=secret_mail(), now=NOW, public_url=URL)
        assert f"{URL}/portal/login?tenant=globex" in texts(notices[0])[0]
        mailbox.register(session, link(notices[0], "register"), "Other-Pass-99", NOW)
    with directory.transaction() as session:
        with pytest.raises(mailbox.LoginFailed):
            mailbox.authenticate(session, "eve@partner.example", PASSWORD, NOW)
        signed_in = mailbox.authenticate(session, "eve@partner.example", "Other-Pass-99", NOW,
                                         tenant_id=other.id)
        assert signed_in.tenant_id == other.id


@both_databases
def test_retention_deletes_expired_messages(directory, tenant_id):
    registered(directory, tenant_id)
    deposit(directory, tenant_id, to=("never@partner.example",))
    with directory.transaction() as session:
        assert mailbox.delete_expired(session, NOW + timedelta(days=89)) == 0
        report = jobs.JOBS["portal-retention"](directory, session, NOW + timedelta(days=91))
    assert report.startswith("2 portal message(s)")
    with directory.transaction() as session:
        assert session.query(PortalMessage).count() == 0
        # Registered accounts stay; one never registered, now empty, is forgotten.
        assert [a.address for a in session.query(PortalAccount)] == ["eve@partner.example"]


def test_uploaded_certificate_is_validated_and_then_used(directory, tenant_id, pki):
    eve_id = registered(directory, tenant_id)
    eve_cert = pki.issue("eve@partner.example")
    stranger = pki.issue("stranger@partner.example")
    with directory.transaction() as session:
        eve = account(session, eve_id)
        with pytest.raises(mailbox.CertificateRefused, match="does not chain") as untrusted:
            mailbox.upload_certificate(session, eve, eve_cert.cert_pem(), NOW)
        assert untrusted.value.reason is mailbox.Reason.CERTIFICATE_UNTRUSTED
        trust.add_anchor(session, pki.cert, NOW)
        with pytest.raises(mailbox.CertificateRefused,
                           match=r"not for eve@partner\.example") as other:
            mailbox.upload_certificate(session, eve, stranger.cert_pem(), NOW)
        assert other.value.reason is mailbox.Reason.CERTIFICATE_OTHER_ADDRESS
        assert other.value.params == {"address": "eve@partner.example"}
        with pytest.raises(mailbox.CertificateRefused, match="not a certificate"):
            mailbox.upload_certificate(session, eve, b"hello", NOW)
        row = mailbox.upload_certificate(session, eve, eve_cert.cert_pem(), NOW)
        assert eve.smime_certificate_id == row.id
        chosen = certificates.select_for_encryption(session, tenant_id, "eve@partner.example",
                                                    NOW)
        assert chosen is not None and chosen.row_id == row.id


def test_one_copy_and_one_notification_per_recipient(directory, tenant_id):
    notices = deposit(directory, tenant_id, to=("eve@partner.example", "EVE@partner.example",
                                                "frank@other.example"))
    *notifications, to_sender = notices
    assert [n.recipients for n in notifications] == [["eve@partner.example"],
                                                     ["frank@other.example"]]
    assert len({link(n, "register") for n in notifications}) == 2
    plain = texts(to_sender)[0]
    assert "eve@partner.example" in plain and "frank@other.example" in plain
    with directory.transaction() as session:
        assert session.query(PortalMessage).count() == 2
        assert len({m.public_id for m in session.query(PortalMessage)}) == 2


def test_policy_changes_are_checked(directory, tenant_id):
    with directory.transaction() as session:
        rules = mailbox.set_policy(session, tenant_id, NOW, default_language="it",
                                   registration="sender-password", retention_days=30,
                                   brand_color="#aa0000")
        assert (rules.default_language, rules.retention_days) == ("it", 30)
        assert mailbox.settings(session, tenant_id)["brand_color"] == "#aa0000"
        for bad, says in (({"default_language": "es"}, "de, en, fr, it"),
                          ({"registration": "open"}, "link, sender-password"),
                          ({"retention_days": 0}, "between 1 and 3650"),
                          ({"retention_days": "90"}, "expected a int"),
                          ({"brand_color": "red;background:url(x)"}, "#1f4e79"),
                          ({"colour": "#fff"}, "unknown portal setting")):
            with pytest.raises(mailbox.PortalError, match=re.escape(says)):
                mailbox.set_policy(session, tenant_id, NOW, **bad)


@pytest.mark.parametrize(("given", "safe"), [
    ("report.pdf", "report.pdf"), ("../../etc/passwd", "passwd"),
    ("C:\\Users\\eve\\plan.xlsx", "plan.xlsx"), ("..\x00hidden", "hidden"), ("", "attachment"),
])
def test_attachment_names_are_never_paths(given, safe):
    assert mailbox.safe_filename(given) == safe


@both_databases
def test_listing_a_folder_never_loads_the_sealed_bodies(directory, tenant_id):
    eve_id = registered(directory, tenant_id)
    deposit(directory, tenant_id)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(directory.engine, "before_cursor_execute", seen)
    try:
        with directory.transaction() as session:
            eve = account(session, eve_id)
            listed = mailbox.inbox(session, eve, master_key=directory.master_key)
            assert len(listed) == 2
            assert not any("data_sealed" in statement for statement in statements)
            statements.clear()
            opened = mailbox.open_message(session, directory.master_key, eve,
                                          listed[0].public_id, NOW)
            assert BODY in opened.data
            # The body comes with the row in one statement, not in a second round trip.
            assert sum("data_sealed" in statement and statement.lstrip().startswith("SELECT")
                       for statement in statements) == 1
    finally:
        event.remove(directory.engine, "before_cursor_execute", seen)


def test_the_portal_reads_only_the_fields_it_shows_each_cut_short():
    fold = b"\r\n " + b"y" * 75
    data = (b"From: Alice <alice@example.com>\r\nX-Junk: " + b"z" * 50_000 +
            b"\r\nTo: bob@partner.example,\r\n carol@x.example\r\nSubject: big" +
            fold * 50_000 + b"\r\nMessage-ID: <m@example.com>\r\n\r\nbody\r\n")
    headers = mailbox._read_headers(data, "fallback@example.com")
    assert headers.sender == "alice@example.com"
    assert headers.to == ["bob@partner.example", "carol@x.example"]
    assert headers.message_id == "<m@example.com>"
    assert headers.subject.startswith("big yyy") and len(headers.subject) <= mailbox.MAX_FIELD
