"""A private Postfix instance for tests: the organisation's real mail server.

Started in the foreground (``postfix start-fg``) with its own configuration, queue and
data directories under the test's temporary directory, listening on 127.0.0.1 only. It
relays outbound mail through ``relayhost`` (sealgate) and hands mail for its own domain
to ``mailbox`` (an SMTP sink standing in for the mailbox store).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.smtp_sink import free_port

POSTFIX = "/usr/sbin/postfix"

_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def _bracketed(host_port: str) -> str:
    """Postfix's [host]:port form: no MX lookup for the host."""
    host, _, port = host_port.rpartition(":")
    return f"[{host}]:{port}"


class PostfixInstance:
    def __init__(self, domain: str, relayhost: str, mailbox: str) -> None:
        if not Path(POSTFIX).exists():
            raise RuntimeError("Postfix is not installed: apt-get install postfix (.ci/run "
                               "does this)")
        # Postfix's own user must reach its data directory: not under pytest's 0700 tree.
        root = Path(tempfile.mkdtemp(prefix="sealgate-postfix-"))
        root.chmod(0o755)
        self.root = root
        self.port = free_port()
        conf, spool, data = root / "conf", root / "spool", root / "data"
        for directory in (conf, spool, data):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(data, "postfix")  # master.lock lives there
        (conf / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.{domain}
mydomain = {domain}
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = {domain}
relayhost = {_bracketed(relayhost)}
transport_maps = inline:{{ {domain}=smtp:{_bracketed(mailbox)} }}
smtp_tls_security_level = may
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = /dev/stdout
""")
        (conf / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        self.conf = conf
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> PostfixInstance:
        # In the foreground Postfix logs to its standard output (maillog_file above).
        self._log = (self.root / "maillog").open("wb")
        self.process = subprocess.Popen([POSTFIX, "-c", str(self.conf), "start-fg"],
                                        stdout=self._log, stderr=subprocess.STDOUT)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"Postfix did not start; see {self.root / 'maillog'}")

    def stop(self) -> None:
        subprocess.run([POSTFIX, "-c", str(self.conf), "stop"], capture_output=True,
                       timeout=60)
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""
