"""Relay throughput and added latency, side by side with Postfix in the same run.

Load: Postfix's ``smtp-source`` sends N messages of 10 KB over parallel sessions; they are
counted by Postfix's ``smtp-sink`` (which dumps each message to a file). Two relays are
measured with the same load:

1. Postfix relaying (no cryptography): smtp-source -> Postfix -> smtp-sink.
2. sealgate (``sealgate serve``) signing and encrypting every message (the recipient's
   certificate is known): smtp-source -> sealgate outbound -> smtp-sink.

The two loads alternate for ``--rounds`` rounds and each relay's best round counts: the
machine is shared, and a round that ran while something else was busy says more about
the something else than about the relay. Every round is listed.

Then the added latency of sealgate at half its measured peak rate: a paced sender records
when each message was accepted (250), an SMTP sink records when it arrived; the
difference is what the gateway added (queueing, signing, encrypting, relaying).

For the reading of the numbers, the CPU time sealgate's processes spent per message in
its best round is reported too (from /proc: the gateway process with the listeners, and
the worker processes).

Usage: ``python bench/relay_bench.py [--messages 1000] [--rounds 3]
[--markdown docs/benchmarks.md]`` (needs the Debian packages postfix and openssl; runs
on 127.0.0.1 only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.postfix import PostfixInstance  # noqa: E402 - the same private Postfix as tests
from tests.smtp_sink import SinkServer, free_port  # noqa: E402

SENDER, RECIPIENT = "alice@example.com", "bob@partner.example"
SIZE = 10 * 1024
START, END = "<!-- relay-bench:start -->", "<!-- relay-bench:end -->"


class DumpSink:
    """Postfix's smtp-sink, dumping each message to a file so that they can be counted."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sealgate-sink-"))
        self.directory.chmod(0o777)  # smtp-sink drops privileges to nobody
        self.process = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-d", f"{self.directory}/%H%M%S.", "-m", "200",
             f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        return sum(1 for _ in self.directory.iterdir())

    def sample(self) -> bytes:
        return next(self.directory.iterdir()).read_bytes()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def smtp_source(port: int, messages: int, sessions: int) -> None:
    subprocess.run(["smtp-source", "-s", str(sessions), "-l", str(SIZE), "-m", str(messages),
                    "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL, timeout=1800)


def wait_for(sink: DumpSink, expected: int, timeout: float = 1800) -> float:
    deadline = time.monotonic() + timeout
    while sink.count() < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sink.count()} of {expected} messages arrived")
        time.sleep(0.05)
    return time.monotonic()


def run_load(port: int, sink: DumpSink, messages: int, sessions: int) -> float:
    """Messages per second from the first connection to the last message at the sink."""
    started = time.monotonic()
    smtp_source(port, messages, sessions)
    finished = wait_for(sink, messages)
    return messages / (finished - started)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the worker processes), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [pid, *(int(c) for c in children.read_text().split())] if children.exists() else [pid]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def partner_certificate(directory: Path) -> Path:
    """A partner certificate to encrypt to (what sealgate would have harvested)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, RECIPIENT)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(RECIPIENT)]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           False)
            .sign(key, hashes.SHA256()))
    path = directory / "partner.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class Sealgate:
    def __init__(self, smarthost: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sealgate-bench-"))
        self.port = free_port()
        self.env = {**os.environ,
                    "SEALGATE_CA__INTERNAL_CA_KEY_TYPE": "rsa2048",
                    "SEALGATE_RELAY__INBOUND_LISTEN": f"127.0.0.1:{free_port()}",
                    "SEALGATE_RELAY__OUTBOUND_LISTEN": f"127.0.0.1:{self.port}",
                    "SEALGATE_RELAY__SMARTHOST": smarthost,
                    "SEALGATE_WEB__LISTEN": f"127.0.0.1:{free_port()}",
                    "SEALGATE_REVOCATION__CHECK": "false"}
        self.env.pop("SEALGATE_CONFIG", None)
        for args in (["init"], ["tenant", "add", "acme"],
                     ["domain", "add", "example.com", "--tenant", "acme", "--verified"],
                     ["user", "add", SENDER], ["cert", "issue", SENDER],
                     ["cert", "import", str(partner_certificate(self.root))]):
            subprocess.run([sys.executable, "-m", "sealgate", *args], cwd=self.root,
                           env=self.env, check=True, capture_output=True)
        self.process = subprocess.Popen([sys.executable, "-m", "sealgate", "serve"],
                                        cwd=self.root, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(6)  # the worker processes start their own interpreters

    def cpu(self) -> dict[int, float]:
        """CPU seconds so far of the gateway process and of each of its children."""
        return {pid: cpu_seconds(pid) for pid in process_tree(self.process.pid)}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def latency(port: int, sink_port: int, rate: float, seconds: float) -> list[float]:
    """Added latency (ms) of each message sent at ``rate`` per second for ``seconds``."""
    sink = SinkServer(sink_port).start()  # where sealgate's smarthost points
    accepted: dict[str, float] = {}
    arrived: dict[str, float] = {}
    original = sink.sink.handle_DATA

    async def timed_data(server, session, envelope):  # type: ignore[no-untyped-def]
        reply = await original(server, session, envelope)
        arrived[envelope.rcpt_tos[0]] = time.monotonic()
        return reply

    sink.sink.handle_DATA = timed_data  # type: ignore[method-assign]
    body = (b"x" * 74 + b"\r\n") * ((SIZE - 200) // 76)
    count = int(rate * seconds)
    with smtplib.SMTP("127.0.0.1", port) as client:
        start = time.monotonic()
        for number in range(count):
            target = start + number / rate
            time.sleep(max(0.0, target - time.monotonic()))
            recipient = f"bob+{number}@partner.example"
            data = (f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: latency {number}\r\n\r\n"
                    ).encode() + body + b"\r\n"
            client.sendmail(SENDER, [recipient], data)
            accepted[recipient] = time.monotonic()
    deadline = time.monotonic() + 60
    while len(arrived) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.stop()
    return [1000 * (arrived[r] - accepted[r]) for r in accepted if r in arrived]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def bar(value: float, top: float, width: int = 40) -> str:
    return "█" * max(1, round(width * value / top))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()

    load_before = os.getloadavg()
    postfix_rates: list[float] = []
    sealgate_rates: list[float] = []
    cpu_per_message: list[tuple[float, float]] = []  # (gateway process, workers) in ms
    sink = DumpSink()
    gateway = Sealgate(sink.address)
    sink_port = sink.port
    sink.stop()
    try:
        for _ in range(args.rounds):
            sink = DumpSink()
            postfix = PostfixInstance("example.com", relayhost=sink.address,
                                      mailbox=sink.address).start()
            try:
                postfix_rates.append(run_load(postfix.port, sink, args.messages, args.sessions))
            finally:
                postfix.stop()
                sink.stop()

            sink = DumpSink(sink_port)
            try:
                before = gateway.cpu()
                sealgate_rates.append(run_load(gateway.port, sink, args.messages,
                                               args.sessions))
                after = gateway.cpu()
                assert b"application/pkcs7-mime" in sink.sample(), "sealgate did not encrypt"
            finally:
                sink.stop()
            spent = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
            main_ms = 1000 * spent.pop(gateway.process.pid) / args.messages
            cpu_per_message.append((main_ms, 1000 * sum(spent.values()) / args.messages))
        half = max(sealgate_rates) / 2
        added = latency(gateway.port, sink_port, half, args.latency_seconds)
    finally:
        gateway.stop()
    load_after = os.getloadavg()

    postfix_rate, sealgate_rate = max(postfix_rates), max(sealgate_rates)
    best = sealgate_rates.index(sealgate_rate)
    main_ms, workers_ms = cpu_per_message[best]
    p50, p99 = statistics.median(added), percentile(added, 0.99)
    ratio = sealgate_rate / postfix_rate
    top = max(postfix_rate, sealgate_rate)

    def rounds(rates: list[float]) -> str:
        return ", ".join(f"{rate:.0f}" for rate in rates)

    lines = [
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU(s) "
        f"(load average {load_before[0]:.1f} before, {load_after[0]:.1f} after: the machine "
        f"is shared); {args.messages} messages of {SIZE // 1024} KB over {args.sessions} "
        f"parallel sessions from smtp-source, counted by smtp-sink; {args.rounds} alternating "
        "rounds per relay, the best round counts.",
        "",
        "| relay | messages/s (best) | every round | vs Postfix |",
        "|---|---:|---|---:|",
        f"| Postfix 3.7, plain relaying | {postfix_rate:.0f} | {rounds(postfix_rates)} | 100% |",
        f"| sealgate, sign + encrypt every message | {sealgate_rate:.0f} | "
        f"{rounds(sealgate_rates)} | {ratio:.0%} |",
        "",
        f"sealgate's CPU time per message in its best round: {main_ms:.1f} ms in the gateway "
        f"process (SMTP listeners), {workers_ms:.1f} ms in the worker processes together "
        f"({main_ms + workers_ms:.1f} ms in all, on {os.cpu_count()} CPU(s)).",
        "",
        f"Added latency through sealgate at half its peak ({half:.0f} messages/s, "
        f"{len(added)} messages over {args.latency_seconds:.0f} s): p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms.",
        "",
        f"Targets: sealgate >= 50 % of Postfix's rate: {'met' if ratio >= 0.5 else 'MISSED'} "
        f"({ratio:.0%}); p99 added latency <= 50 ms: {'met' if p99 <= 50 else 'MISSED'} "
        f"({p99:.1f} ms).",
        "",
        "```",
        f"Postfix   {bar(postfix_rate, top)} {postfix_rate:.0f}/s",
        f"sealgate  {bar(sealgate_rate, top)} {sealgate_rate:.0f}/s",
        "```",
    ]
    block = "\n".join(lines)
    print(block)
    if args.markdown:
        text = args.markdown.read_text() if args.markdown.exists() else ""
        generated = f"{START}\n\n{block}\n\n{END}"
        if START in text and END in text:
            text = text[:text.index(START)] + generated + text[text.index(END) + len(END):]
        else:
            text += ("\n## Relay\n\nsealgate relaying next to Postfix (`bench/relay_bench.py`,"
                     " see its docstring for the method).\n\n" + generated + "\n")
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
