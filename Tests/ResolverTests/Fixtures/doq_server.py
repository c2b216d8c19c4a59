#!/usr/bin/env python3
"""Test-only DNS-over-QUIC server (RFC 9250) for Sotto's DoQ unit tests. Not the lab server.

Listens on 127.0.0.1 (port from --port, 0 = any free port), ALPN "doq", a fresh self-signed
certificate (CN/SAN "doq.test"), single-use session tickets. Each stream carries one query with a
2-octet length prefix; the answer is "A 192.0.2.1" for any name. A query whose Message ID is not 0 is
a protocol error: the connection is closed with DOQ_PROTOCOL_ERROR (0x2).

Prints "LISTENING <port>" once ready, "QUERY <id> <name>" per query and "CLOSE <code> <reason>" when
a client closes. Names starting "silent" are never answered, names starting "slow" 8 ms late
(aioquic then acknowledges the query alone first). Flags: --reset-streams (reset every stream with
DOQ_INTERNAL_ERROR), --bad-id (reply with Message ID 0x1234), --bad-length (wrong length prefix),
--reject-early-data (resume, but refuse 0-RTT), --ignore-stop-sending (a cancelled stream is neither
answered nor reset, against RFC 9000 §3.5: it dangles; logged as "IGNORED-STOP <stream>"),
--weak-key (a 1024-bit RSA key instead of P-256).
"""

import argparse
import asyncio
import datetime
import os
import struct
import sys
import tempfile

import dns.message
import dns.rrset
from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic import events as quic_events
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived

# aioquic reports STOP_SENDING from 1.0 on; older versions leave the "STOP" line out.
StopSendingReceived = getattr(quic_events, "StopSendingReceived", None)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

DOQ_NO_ERROR, DOQ_INTERNAL_ERROR, DOQ_PROTOCOL_ERROR = 0, 1, 2


def make_certificate(directory, weak_key=False):
    # --weak-key: RSA-1024, below OpenSSL's security level 2 (Debian's default).
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024) if weak_key else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doq.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("doq.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


def log(line):
    print(line, flush=True)


class DoQProtocol(QuicConnectionProtocol):
    options = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._buffers = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            data = self._buffers.pop(event.stream_id, b"") + event.data
            if not event.end_stream:
                self._buffers[event.stream_id] = data
                return
            self.answer(event.stream_id, data)
        elif isinstance(event, ConnectionTerminated):
            log(f"CLOSE {event.error_code} {event.reason_phrase}")
        elif StopSendingReceived is not None and isinstance(event, StopSendingReceived):
            log(f"STOP {event.error_code}")

    def answer(self, stream_id, data):
        opts = DoQProtocol.options
        if opts.reset_streams:
            self._quic.reset_stream(stream_id, DOQ_INTERNAL_ERROR)
            self.transmit()
            return
        if len(data) < 2 or struct.unpack("!H", data[:2])[0] != len(data) - 2:
            self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase="bad length")
            self.transmit()
            return
        query = dns.message.from_wire(data[2:])
        log(f"QUERY {query.id} {query.question[0].name if query.question else '-'}")
        if query.id != 0:
            self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase="non-zero Message ID")
            self.transmit()
            return
        if query.question and str(query.question[0].name).startswith("silent"):
            return  # never answered: the client's timeout must cancel the stream
        if query.question and str(query.question[0].name).startswith("slow"):
            # Answered 8 ms late: aioquic acknowledges the query alone after 1 ms first.
            asyncio.get_running_loop().call_later(0.008, self.respond, stream_id, query)
            return
        self.respond(stream_id, query)

    def respond(self, stream_id, query):
        opts = DoQProtocol.options
        response = dns.message.make_response(query)
        if query.question:
            q = query.question[0]
            response.answer.append(dns.rrset.from_text(q.name, 60, "IN", "A", "192.0.2.1"))
        if opts.bad_id:
            response.id = 0x1234
        wire = response.to_wire()
        length = len(wire) + (5 if opts.bad_length else 0)
        self._quic.send_stream_data(stream_id, struct.pack("!H", length) + wire, end_stream=True)
        self.transmit()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reset-streams", action="store_true")
    parser.add_argument("--bad-id", action="store_true")
    parser.add_argument("--bad-length", action="store_true")
    parser.add_argument("--reject-early-data", action="store_true")
    parser.add_argument("--ignore-stop-sending", action="store_true")
    parser.add_argument("--weak-key", action="store_true")
    DoQProtocol.options = parser.parse_args()
    if DoQProtocol.options.ignore_stop_sending:
        # aioquic resets a stream on STOP_SENDING (1.0 on). Its frame table binds the handler when a
        # connection is made, so the class's method is replaced before any is.
        from aioquic.quic.connection import QuicConnection

        def ignore_stop_sending(self, context, frame_type, buf):
            stream_id = buf.pull_uint_var()
            buf.pull_uint_var()  # application error code
            log(f"IGNORED-STOP {stream_id}")

        QuicConnection._handle_stop_sending_frame = ignore_stop_sending
    if DoQProtocol.options.reject_early_data:
        # aioquic accepts 0-RTT whenever a resumed client offers it: hide the offer.
        import aioquic.tls as tls

        pull = tls.pull_client_hello

        def pull_without_early_data(buf):
            hello = pull(buf)
            hello.early_data = False
            return hello

        tls.pull_client_hello = pull_without_early_data

    directory = tempfile.mkdtemp(prefix="doq-fixture-")
    cert_path, key_path = make_certificate(directory, DoQProtocol.options.weak_key)
    configuration = QuicConfiguration(alpn_protocols=["doq"], is_client=False, idle_timeout=30.0)
    configuration.load_cert_chain(cert_path, key_path)

    tickets = {}
    server = await serve(
        "127.0.0.1",
        DoQProtocol.options.port,
        configuration=configuration,
        create_protocol=DoQProtocol,
        session_ticket_fetcher=lambda label: tickets.pop(label, None),  # single use
        session_ticket_handler=lambda ticket: tickets.__setitem__(ticket.ticket, ticket),
    )
    port = server._transport.get_extra_info("sockname")[1]
    log(f"CERT {cert_path}")  # before LISTENING: a test may trust it as a CA file
    log(f"LISTENING {port}")
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
