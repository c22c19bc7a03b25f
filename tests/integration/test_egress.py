"""The webhook client resolves once, refuses non-global answers, and connects to the address it checked; a host
written as an IP address (which aiohttp connects to without asking a resolver) is checked before each request."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientConnectorCertificateError, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.notifier.egress import EgressRefused, WebhookClient, check_url
from services.notifier.sending import Request, post
from tests.support.processes import free_port
from tests.support.receiver import Receiver

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


class FakeDns:
    """Stands in for DNS: always answers `answer`, and remembers what it was asked."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [self.answer]


def _port(receiver: Receiver) -> str:
    return receiver.url.split(":")[2].split("/")[0]


PRIVATE = [
    "10.0.0.1",
    "169.254.169.254",
    "::1",
    "64:ff9b::a9fe:a9fe",
    "fe80::1",
    "::127.0.0.1",
    "::ffff:0:10.0.0.1",
    "fec0::1",
]


@pytest.mark.parametrize("answer", PRIVATE)
async def test_a_hostname_resolving_to_a_private_address_is_refused(answer: str) -> None:
    with pytest.raises(EgressRefused):
        await check_url("https://hooks.customer.example/x", [], FakeDns(answer))
    async with WebhookClient([], FakeDns(answer)) as client:
        with pytest.raises(EgressRefused):
            async with client.post("https://hooks.customer.example/x", b"{}", {}):
                pass


async def test_the_connection_goes_to_the_checked_address_with_the_hostname_kept() -> None:
    with Receiver() as receiver:
        port = _port(receiver)
        fake = FakeDns("127.0.0.1")
        url = f"http://hooks.customer.example:{port}/hooks"
        async with WebhookClient(LOOPBACK, fake) as client, client.post(url, b"{}", {}) as response:
            assert response.status == 204
    assert fake.calls == ["hooks.customer.example"]  # resolved once
    assert receiver.received[0].headers["host"] == f"hooks.customer.example:{port}"


@pytest.mark.parametrize("address", ["127.0.0.1", "[::1]", *(f"[{a}]" if ":" in a else a for a in PRIVATE)])
async def test_an_ip_literal_host_is_checked_before_each_request(address: str) -> None:
    """aiohttp connects to an IP literal without asking its resolver: the client checks it itself, and the DNS is
    never asked."""
    dns = FakeDns("203.0.113.7")
    with Receiver() as receiver:
        async with WebhookClient([], dns) as client:
            for _ in range(2):  # the second request could reuse a pooled connection: still refused
                request = Request(f"http://{address}:{_port(receiver)}/hooks", b"{}", {})
                outcome = await post(client, request, deadline_s=5)
                assert outcome.status_code is None
                assert (outcome.error or "").startswith("EgressRefused"), outcome.error
    assert receiver.received == []
    assert dns.calls == []


async def test_the_client_connects_to_the_checked_address_with_the_hostname_kept_and_resolves_once() -> None:
    with Receiver() as receiver:
        port = _port(receiver)
        fake = FakeDns("127.0.0.1")
        async with WebhookClient(LOOPBACK, fake) as client:
            request = Request(f"http://hooks.customer.example:{port}/hooks", b"{}", {})
            for _ in range(3):
                outcome = await post(client, request, deadline_s=5)
                assert outcome.status_code == 204
    assert fake.calls == ["hooks.customer.example"]  # resolved once
    assert [r.headers["host"] for r in receiver.received] == [f"hooks.customer.example:{port}"] * 3


async def test_the_allowlist_does_not_open_other_private_ranges() -> None:
    with pytest.raises(EgressRefused):
        await check_url("http://internal.example/", LOOPBACK, FakeDns("10.1.2.3"))


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]", "[::1]", "127.000.000.001", "2130706433"],
)
async def test_a_literal_or_numeric_host_is_refused_before_any_connection(host: str) -> None:
    """aiohttp connects to an IP-literal host without asking the resolver: the client checks it itself, so a
    loopback receiver (reachable from here, also through the IPv4-mapped form) never sees the request."""
    with Receiver() as receiver:
        fake = FakeDns("93.184.216.34")
        async with WebhookClient([], fake) as client:
            with pytest.raises(EgressRefused):
                async with client.post(f"http://{host}:{_port(receiver)}/hooks", b"{}", {}):
                    pass
    assert receiver.received == []
    assert fake.calls == []


async def test_an_allowed_ip_literal_is_reached_without_the_resolver() -> None:
    with Receiver() as receiver:
        fake = FakeDns("10.0.0.1")
        async with WebhookClient(LOOPBACK, fake) as client:
            outcome = await post(client, Request(receiver.url, b"{}", {}), deadline_s=5)
    assert outcome.status_code == 204
    assert len(receiver.received) == 1
    assert fake.calls == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "unix:///run/docker.sock", "http:///hooks"])
async def test_only_http_and_https_urls_with_a_host_are_posted_to(url: str) -> None:
    async with WebhookClient(LOOPBACK, FakeDns("127.0.0.1")) as client:
        with pytest.raises(EgressRefused):
            async with client.post(url, b"{}", {}):
                pass


async def test_a_redirect_is_an_answer_not_followed() -> None:
    with Receiver(default=(307, {"location": "/elsewhere"})) as receiver:
        async with WebhookClient(LOOPBACK) as client, client.post(receiver.url, b"{}", {}) as response:
            assert response.status == 307
    assert [message.path for message in receiver.received] == ["/hooks"]


async def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    with Receiver() as receiver:
        proxy = f"http://127.0.0.1:{_port(receiver)}"  # a proxy would get an absolute-form request line
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        url = f"http://hooks.customer.example:{_port(receiver)}/hooks"
        async with WebhookClient(LOOPBACK, FakeDns("127.0.0.1")) as client, client.post(url, b"{}", {}) as response:
            assert response.status == 204
    assert [message.path for message in receiver.received] == ["/hooks"]  # not http://hooks.customer.example/...


async def test_a_receiver_cannot_set_cookies_for_later_webhooks() -> None:
    with Receiver() as receiver:
        receiver.script((204, {"set-cookie": "session=abc; Path=/"}))
        url = f"http://hooks.customer.example:{_port(receiver)}/hooks"
        async with WebhookClient(LOOPBACK, FakeDns("127.0.0.1")) as client:
            for _ in range(2):
                async with client.post(url, b"{}", {}) as response:
                    assert response.status == 204
    assert [message.headers.get("cookie") for message in receiver.received] == [None, None]


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), pem


@pytest.fixture
async def tls_receiver(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[int, list[str]]]:
    """An HTTPS receiver on 127.0.0.1 whose certificate (for hooks.customer.example) no public CA signed."""
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = _self_signed("hooks.customer.example")
    (folder / "cert.pem").write_bytes(certificate)
    (folder / "key.pem").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    seen: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield port, seen
    finally:
        await runner.cleanup()


async def test_tls_certificates_are_verified(tls_receiver: tuple[int, list[str]]) -> None:
    port, seen = tls_receiver
    async with WebhookClient(LOOPBACK, FakeDns("127.0.0.1")) as client:
        with pytest.raises(ClientConnectorCertificateError):
            async with client.post(f"https://hooks.customer.example:{port}/hooks", b"{}", {}):
                pass
    assert seen == []
