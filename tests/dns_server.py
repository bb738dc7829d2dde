"""A tiny authoritative DNS server for tests: loopback only, records in a plain dict.

    with DnsServer({"_sealgate.example.com": [("TXT", "sealgate-verification=…")]}) as dns:
        config = {"dns": {"nameservers": [dns.address]}}
        ...
        dns.records.pop("_sealgate.example.com")  # the record is gone from now on
        assert dns.query_count == 1

It answers over UDP and TCP on the same port of 127.0.0.1 (chosen by the system), from a
background thread. Answers are authoritative and follow RFC 1035/2308/8020: the records
of the asked type (NOERROR), NOERROR with an empty answer when the name exists but not
with that type (an empty non-terminal counts as existing), NXDOMAIN when it does not exist
at all; both negative answers carry the zone's SOA so resolvers may cache them. Record
texts are in zone-file presentation form; a TXT text not in quotes is quoted for you.

``silent = True`` makes the server swallow queries, like a nameserver that has gone away
behind a firewall; ``stop()`` closes its sockets (connection refused from then on).
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = dict[str, list[tuple[str, str]]]
TTL = 60


def _key(name: str | dns.name.Name) -> str:
    return str(name).rstrip(".").lower()


class DnsServer:
    """An authoritative server for whatever names ``records`` holds (name → [(type, text)])."""

    def __init__(self, records: Mapping[str, Sequence[tuple[str, str]]] | None = None) -> None:
        self.records: Records = {_key(name): list(rows) for name, rows in (records or {}).items()}
        self.queries: list[tuple[str, str, str]] = []  # (name, type, "udp" | "tcp")
        self.silent = False
        self.host = "127.0.0.1"
        self.port = 0
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    # --- what tests use --------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port``, as ``[dns] nameservers`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def query_count(self) -> int:
        with self._lock:
            return len(self.queries)

    def set(self, name: str, *rows: tuple[str, str]) -> None:
        """Replace every record of ``name`` (no rows: the name stops existing)."""
        if rows:
            self.records[_key(name)] = list(rows)
        else:
            self.records.pop(_key(name), None)

    def start(self) -> DnsServer:
        udp, tcp = self._bind_pair()
        for server in (udp, tcp):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"dns-{type(server).__name__}", daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # --- answering ---------------------------------------------------------------------

    def answer(self, wire: bytes, transport: str) -> bytes | None:
        """The response to one query in wire form (None: no answer at all)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS: a real server drops it too
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            self.queries.append((_key(question.name), dns.rdatatype.to_text(question.rdtype),
                                 transport))
        if self.silent:
            return None
        response = dns.message.make_response(query)
        if question.rdclass != dns.rdataclass.IN:
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        response.flags |= dns.flags.AA
        name = _key(question.name)
        rows = list(self.records.get(name, ()))
        wanted = [text for kind, text in rows
                  if dns.rdatatype.from_text(kind) == question.rdtype
                  or question.rdtype == dns.rdatatype.ANY]
        if wanted and question.rdtype != dns.rdatatype.ANY:
            response.answer.append(dns.rrset.from_text_list(
                question.name, TTL, dns.rdataclass.IN, question.rdtype,
                [_presentation(question.rdtype, text) for text in wanted]))
        elif wanted:
            for kind, text in rows:
                rdtype = dns.rdatatype.from_text(kind)
                response.answer.append(dns.rrset.from_text(
                    question.name, TTL, dns.rdataclass.IN, rdtype, _presentation(rdtype, text)))
        else:
            if not self._exists(name):
                response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa(question.name))
        if transport == "tcp":
            return response.to_wire()
        try:
            return response.to_wire(max_size=_udp_size(query))
        except dns.exception.TooBig:  # RFC 1035 4.2.1: say so, and the client asks over TCP
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()

    def _exists(self, name: str) -> bool:
        """The name has records, or is an empty non-terminal above a name that has some."""
        return any(owner == name or owner.endswith("." + name) for owner in list(self.records))

    def _soa(self, qname: dns.name.Name) -> dns.rrset.RRset:
        zone = dns.name.Name(qname.labels[-3:])  # the last two labels, e.g. example.com.
        return dns.rrset.from_text(zone, TTL, "IN", "SOA",
                                   f"ns.{zone} hostmaster.{zone} 1 3600 600 86400 {TTL}")

    # --- sockets -----------------------------------------------------------------------

    def _bind_pair(self) -> tuple[socketserver.BaseServer, socketserver.BaseServer]:
        """UDP and TCP on one port number: retry when the TCP side of it happens to be taken."""
        for _ in range(20):
            udp = _UdpServer((self.host, 0), self)
            port = udp.server_address[1]
            try:
                tcp = _TcpServer((self.host, port), self)
            except OSError:
                udp.server_close()
                continue
            self.port = port
            return udp, tcp
        raise RuntimeError("no loopback port free for both UDP and TCP")


def _presentation(rdtype: dns.rdatatype.RdataType, text: str) -> str:
    if rdtype == dns.rdatatype.TXT and not text.startswith('"'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _udp_size(query: dns.message.Message) -> int:
    return max(query.payload, 512) if query.edns >= 0 else 512


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.dns_server = dns_server
        super().__init__(address, _UdpHandler)


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False  # the port must really be ours

    def __init__(self, address: tuple[str, int], dns_server: DnsServer) -> None:
        self.dns_server = dns_server
        super().__init__(address, _TcpHandler)


class _UdpHandler(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        wire, sock = self.request
        reply = self.server.dns_server.answer(wire, "udp")
        if reply is not None:
            sock.sendto(reply, self.client_address)


class _TcpHandler(socketserver.StreamRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        self.connection.settimeout(5)
        try:
            while True:  # RFC 7766: several queries may share one connection
                length = self.rfile.read(2)
                if len(length) < 2:
                    return
                wire = self.rfile.read(int.from_bytes(length, "big"))
                reply = self.server.dns_server.answer(wire, "tcp")
                if reply is None:
                    return
                self.wfile.write(len(reply).to_bytes(2, "big") + reply)
                self.wfile.flush()
        except (TimeoutError, ConnectionError):
            return

