"""TLS, mutual TLS and passwords against a real Mosquitto: the agent connects only with the right credentials."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import _broker, free_port

pytest.register_assert_rewrite("agent_harness")

from agent_harness import Stream, sample_rows, wait_until  # noqa: E402

pytest_plugins = ["agent_harness"]

USER, PASSWORD = "gw1", "correct horse battery staple"


def _certs(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("edge-ids test CA")).issuer_name(name("edge-ids test CA"))
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    write("ca", ca_key, ca)
    for stem, usage, sans in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH,
         [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName("gw1")]),
    ):  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(name(stem)).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        write(stem, key, cert)
    return {p.stem + p.suffix: p for p in directory.iterdir()}


@pytest.fixture
def broker(tmp_path: Path):
    """Plain listener (test publisher and collector) + a mutual-TLS listener + password file."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _certs(certs)
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    subprocess.run([tool, "-b", "-c", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    tls_port = free_port()
    extra = (
        f"password_file {passwd}",  # global: clients that send a username must send its password
        f"listener {tls_port} 127.0.0.1",
        f"cafile {certs / 'ca.pem'}",
        f"certfile {certs / 'server.pem'}",
        f"keyfile {certs / 'server.key'}",
        "require_certificate true",
    )
    gen = _broker(tmp_path, durable=False, extra=extra)
    b = next(gen)
    b.tls_port, b.certs = tls_port, certs
    yield b
    next(gen, None)


def _tls_settings(broker, **over):
    certs = broker.certs
    return {
        "mqtt__host": "localhost",  # the server certificate names localhost: hostname verification is on
        "mqtt__port": broker.tls_port,
        "mqtt__tls": {
            "enabled": True,
            "ca_file": str(certs / "ca.pem"),
            "cert_file": str(certs / "client.pem"),
            "key_file": str(certs / "client.key"),
            **over,
        },
    }


@pytest.mark.timeout(120, func_only=True)
def test_mutual_tls_agent_scores_flows(agents, collector, broker, sample_csv):
    agent = agents.spawn(**_tls_settings(broker))
    rows = sample_rows(sample_csv, 50, include_inf=False)
    Stream(rows, broker.port).run()  # published on the plain listener, delivered to the agent over TLS
    collector.wait_seqs(range(50), 30, agent.log)


@pytest.mark.timeout(120, func_only=True)
def test_tls_without_client_certificate_is_refused_and_the_agent_keeps_trying(agents, broker):
    cfg = agents.config(**_tls_settings(broker, cert_file="", key_file=""))
    from agent_harness import AgentProcess, write_config

    path = write_config(agents.tmp_path / "nocert" / "agent.yaml", cfg)
    agent = AgentProcess(path, agents.tmp_path / "nocert" / "agent.log")
    agents.started.append(agent)
    agent.start()
    # TLS 1.3: the broker's "certificate required" alert arrives on the first read; paho logs it and retries
    wait_until(lambda: agent.log().count("certificate required") >= 2, 20, "refused handshakes, retried", agent.log)
    assert agent.alive, agent.log()
    assert "connected (session present" not in agent.log()


@pytest.mark.timeout(120, func_only=True)
def test_password_from_systemd_credential_connects_and_a_wrong_one_is_refused(agents, collector, broker, sample_csv):
    creds = agents.tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text(PASSWORD + "\n")
    good = agents.spawn("good", mqtt__username=USER, env={"CREDENTIALS_DIRECTORY": str(creds)})
    Stream(sample_rows(sample_csv, 20, include_inf=False), broker.port).run()
    collector.wait_seqs(range(20), 30, good.log)

    from agent_harness import AgentProcess, write_config

    wrong = agents.tmp_path / "wrong.pw"
    wrong.write_text("not the password")
    cfg = agents.config("bad", mqtt__username=USER, mqtt__password_file=str(wrong))
    bad = AgentProcess(write_config(agents.tmp_path / "bad" / "agent.yaml", cfg), agents.tmp_path / "bad" / "agent.log")
    agents.started.append(bad)
    bad.start()
    wait_until(lambda: "refused the connection" in bad.log(), 20, "the broker refusing the wrong password", bad.log)
    assert bad.alive, bad.log()
