"""Portal latency under load: login, inbox (100 messages) and message view.

The portal runs as in production: ``gunicorn wsgi:app`` with 2 sync workers, on the
PostgreSQL server at 127.0.0.1:5432 (a schema of its own, dropped afterwards; ``--sqlite``
uses an SQLite file instead). 50 portal accounts each hold 100 secure messages (10 KB,
text and HTML, every fifth with an attachment), stored through the same ``deposit`` the
relay uses, so every message is sealed at rest and decrypted per request.

50 simulated users then work concurrently, each in its own thread with its own cookies,
in visits: sign in (argon2 verification, by design the costliest request), then five
times the inbox and a message (the page plus its sandboxed body document), sign out, and
again, with a think time between requests (0.5-1.5 s, a brisk human). Arrivals are spread
over one visit's length, so sign-ins are measured under the steady load of the others,
not as 50 in the same instant. The same users are measured a second time without think
time, which shows the saturation rate of the two workers.
The load generator shares the machine's cores with gunicorn; its cost is in the figures.

Usage: ``python bench/portal_bench.py [--users 50] [--seconds 30] [--markdown docs/benchmarks.md]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import create_engine, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keydir import mailbox  # noqa: E402
from keydir.config import load_config  # noqa: E402
from keydir.mailbox_models import PortalAccount  # noqa: E402
from keydir.service import initialise  # noqa: E402
from keydir.tenancy import add_domain, add_tenant  # noqa: E402

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "bench-Password-2026"
MESSAGES_PER_USER = 100
PAGES_PER_VISIT = 5  # inbox + message views between signing in and signing out
START, END = "<!-- portal-bench:start -->", "<!-- portal-bench:end -->"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_MESSAGE_LINK = re.compile(r'/portal/m/([A-Za-z0-9_-]{16,64})"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def sample_message(number: int, recipients: list[str]) -> bytes:
    message = EmailMessage()
    message["From"] = "Alice Example <alice@example.com>"
    message["To"] = ", ".join(recipients[:3])
    message["Subject"] = f"Quarterly figures, part {number}"
    message["Message-ID"] = f"<bench-{number}@example.com>"
    paragraph = ("The figures for the quarter are attached; revenue grew in every region "
                 "and the new contracts are signed. ") * 4
    body = "\n\n".join(f"{index}. {paragraph}" for index in range(20))
    message.set_content(body)
    message.add_alternative("<html><body>" + "".join(
        f"<p><b>{index}.</b> {paragraph}</p>" for index in range(20)) + "</body></html>",
        subtype="html")
    if number % 5 == 0:
        message.add_attachment(b"region,revenue\nnorth,100\nsouth,120\n" * 40,
                               maintype="text", subtype="csv", filename="figures.csv")
    return bytes(message)


class Installation:
    """A data directory, a database and the portal's users with their messages."""

    def __init__(self, users: int, sqlite: bool) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sealgate-portal-bench-"))
        self.port = free_port()
        self.schema = "" if sqlite else f"bench_{uuid.uuid4().hex[:12]}"
        if self.schema:
            with create_engine(POSTGRES).begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            url = f"{POSTGRES}?options=-csearch_path%3D{self.schema}"
        else:
            url = ""
        self.public_url = f"http://127.0.0.1:{self.port}"
        self.config_file = self.root / "sealgate.toml"
        self.config_file.write_text(
            f'[data]\ndir = "{self.root / "data"}"\n'
            f'[database]\nurl = "{url}"\n'
            f'[web]\npublic_url = "{self.public_url}"\n'
            f'listen = "127.0.0.1:{self.port}"\n'
            # The bench's users all come from 127.0.0.1: per-address limits would throttle
            # the load generator, not measure the portal.
            'lookup_rate_limit = "100000/second"\n'
            'portal_rate_limit = "100000/second"\n')
        self.env = {**os.environ, "SEALGATE_CONFIG": str(self.config_file)}
        self.addresses = [f"user{number:02d}@partner.example" for number in range(users)]
        self._seed()

    def _seed(self) -> None:
        config = load_config(str(self.config_file), environ={})
        now = dt.datetime.now(dt.UTC)
        directory = initialise(config, now)
        try:
            with directory.transaction() as session:
                tenant = add_tenant(session, "acme", now, display_name="ACME Corp")
                add_domain(session, tenant, "example.com", now, operator_verified=True)
                tenant_id = tenant.id
            for number in range(MESSAGES_PER_USER):
                with directory.transaction() as session:
                    mailbox.deposit(session, directory.master_key, tenant_id=tenant_id,
                                    mail_from="alice@example.com", recipients=self.addresses,
                                    data=sample_message(number, self.addresses),
                                    now=now - dt.timedelta(minutes=number),
                                    public_url=self.public_url)
            with directory.transaction() as session:
                accounts = session.scalars(select(PortalAccount).where(
                    PortalAccount.tenant_id == tenant_id))
                for account in accounts:
                    mailbox.set_password(session, account, PASSWORD, now)
        finally:
            directory.close()

    def start_gunicorn(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind",
             f"127.0.0.1:{self.port}", "--log-level", "warning", "wsgi:app"],
            cwd=ROOT, env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.public_url}/portal/login", timeout=10).read()
                return process
            except OSError:  # not listening yet, or still importing the application
                time.sleep(0.2)
        process.kill()
        raise RuntimeError("gunicorn did not come up within 60 s")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if self.schema:
            with create_engine(POSTGRES).begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect is a result to time, not something to follow


class User:
    """One browser: its own cookies; every request timed by kind."""

    def __init__(self, base: str, address: str, timings: dict[str, list[float]],
                 lock: threading.Lock) -> None:
        self.base, self.address, self.timings, self.lock = base, address, timings, lock
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect)
        self.message_ids: list[str] = []
        self.page = ""

    def _request(self, kind: str, path: str, form: dict[str, str] | None = None) -> str:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        started = time.perf_counter()
        try:
            with self.opener.open(self.base + path, data=data, timeout=60) as response:
                body = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as redirect:
            body, status = redirect.read().decode(), redirect.code
        elapsed = (time.perf_counter() - started) * 1000
        if status >= 400:
            raise RuntimeError(f"{kind}: HTTP {status} for {path}")
        if kind:
            with self.lock:
                self.timings[kind].append(elapsed)
        return body

    def login(self) -> None:
        page = self._request("", "/portal/login")
        token = _CSRF.search(page)
        if token is None:
            raise RuntimeError("the login page has no CSRF token")
        self._request("login", "/portal/login", {
            "csrf_token": token.group(1), "address": self.address, "password": PASSWORD,
            "remember": "y", "tenant": ""})

    def logout(self) -> None:
        token = _CSRF.search(self.page)
        if token is None:
            raise RuntimeError("the inbox has no sign-out form")
        self._request("", "/portal/logout", {"csrf_token": token.group(1)})

    def inbox(self) -> None:
        page = self.page = self._request("inbox", "/portal/inbox")
        self.message_ids = _MESSAGE_LINK.findall(page)
        if len(set(self.message_ids)) < MESSAGES_PER_USER:
            raise RuntimeError(f"the inbox of {self.address} shows "
                               f"{len(set(self.message_ids))} messages, expected "
                               f"{MESSAGES_PER_USER}")

    def view(self) -> None:
        public_id = random.choice(self.message_ids)
        self._request("message", f"/portal/m/{public_id}")
        self._request("message body", f"/portal/m/{public_id}/body")


def run(base: str, addresses: list[str], seconds: float,
        think: tuple[float, float]) -> tuple[dict[str, list[float]], float]:
    """Every user signs in, then alternates inbox and message views until time is up."""
    timings: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors: list[BaseException] = []
    deadline = time.monotonic() + seconds

    def pause() -> None:
        if think[1]:
            time.sleep(random.uniform(*think))

    def browse(address: str) -> None:
        user = User(base, address, timings, lock)
        try:
            # Users arrive spread over one visit's length, not all in the same instant.
            time.sleep(random.uniform(0, think[1] * 2 * PAGES_PER_VISIT))
            while time.monotonic() < deadline:
                user.login()
                pause()
                for _ in range(PAGES_PER_VISIT):
                    user.inbox()
                    pause()
                    user.view()
                    pause()
                    if time.monotonic() >= deadline:
                        break
                user.logout()
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=browse, args=(a,)) for a in addresses]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"{len(errors)} user(s) failed, first: {errors[0]!r}")
    requests = sum(len(values) for values in timings.values())
    return timings, requests / elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def bar(value: float, top: float, width: int = 40) -> str:
    return "█" * max(1, round(width * value / top))


def chart(timings: dict[str, list[float]]) -> list[str]:
    """p95 per request kind as bars, with the 100 ms target marked on the same scale."""
    kinds = [kind for kind in ("login", "inbox", "message", "message body")
             if timings.get(kind)]
    p95 = {kind: percentile(timings[kind], 0.95) for kind in kinds}
    top = max(100.0, *p95.values())
    target = round(40 * 100 / top)
    lines = [f"{'target':<13} p95 {'┆'.rjust(target)} 100 ms"]
    lines += [f"{kind:<13} p95 {bar(p95[kind], top)} {p95[kind]:.0f} ms" for kind in kinds]
    return lines


def table(timings: dict[str, list[float]]) -> list[str]:
    lines = ["| request | count | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
    for kind in ("login", "inbox", "message", "message body"):
        values = timings.get(kind, [])
        if values:
            lines.append(f"| {kind} | {len(values)} | {statistics.median(values):.1f} | "
                         f"{percentile(values, 0.95):.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    installation = Installation(args.users, args.sqlite)
    server = installation.start_gunicorn()
    try:
        paced, paced_rate = run(installation.public_url, installation.addresses,
                                args.seconds, (0.5, 1.5))
        saturated, saturated_rate = run(installation.public_url, installation.addresses,
                                        args.seconds, (0.0, 0.0))
    finally:
        server.terminate()
        server.wait(timeout=30)
        installation.remove()

    worst = max(percentile(paced[kind], 0.95) for kind in ("login", "inbox", "message"))
    database = "SQLite" if args.sqlite else "PostgreSQL 15"
    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU(s): "
        f"gunicorn with 2 sync workers on {database}; {args.users} users, each with "
        f"{MESSAGES_PER_USER} sealed messages of about 10 KB, for {args.seconds:.0f} s per "
        "run; the load generator runs on the same cores.",
        "",
        f"**{args.users} concurrent users, 0.5-1.5 s think time** "
        f"({paced_rate:.0f} requests/s):",
        "",
        *table(paced),
        "",
        f"Target p95 <= 100 ms for login, inbox and message view: "
        f"{'met' if worst <= 100 else 'MISSED'} (worst p95 {worst:.1f} ms).",
        "",
        f"**The same users without think time** (saturation: {saturated_rate:.0f} "
        "requests/s):",
        "",
        *table(saturated),
        "",
        "```",
        *chart(paced),
        "```",
    ]
    block = "\n".join(lines)
    print(block)
    if args.markdown:
        content = args.markdown.read_text() if args.markdown.exists() else ""
        generated = f"{START}\n\n{block}\n\n{END}"
        if START in content and END in content:
            content = (content[:content.index(START)] + generated
                       + content[content.index(END) + len(END):])
        else:
            content += ("\n## Portal\n\nThe web portal under load (`bench/portal_bench.py`, "
                        "see its docstring for the method).\n\n" + generated + "\n")
        args.markdown.write_text(content)


if __name__ == "__main__":
    main()
