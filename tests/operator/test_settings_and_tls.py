"""The operator's derived settings and its TLS set-up from kubeconfig data."""

from __future__ import annotations

import base64
import subprocess
import tempfile
from pathlib import Path

import kopf

from functions.operator.kube import ssl_context
from functions.operator.settings import OperatorSettings

BASE = {"NOTIFY_ADMIN_TOKEN": "t"}


def test_the_mirror_namespace_is_watched_too_unless_everything_is() -> None:
    named = OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "erp, shop", "OPERATOR_MIRROR_NAMESPACE": "m"})
    assert named.watched_namespaces == ("erp", "shop", "m")
    already = OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "erp,m", "OPERATOR_MIRROR_NAMESPACE": "m"})
    assert already.watched_namespaces == ("erp", "m")
    assert OperatorSettings.from_env({**BASE, "OPERATOR_MIRROR_NAMESPACE": "m"}).watched_namespaces == ()
    assert OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "erp"}).watched_namespaces == ("erp",)


def test_a_client_key_given_as_data_is_loaded_and_not_left_on_disk(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    self_signed = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test"]
    subprocess.run(
        [*self_signed, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    before = set(Path(tempfile.gettempdir()).glob("kube-*"))
    info = kopf.ConnectionInfo(
        server="https://127.0.0.1:6443",
        ca_data=base64.b64encode(cert.read_bytes()),
        certificate_data=base64.b64encode(cert.read_bytes()),
        private_key_data=base64.b64encode(key.read_bytes()),
    )
    context = ssl_context(info)
    assert not isinstance(context, bool) and context.verify_mode.name == "CERT_REQUIRED"
    assert set(Path(tempfile.gettempdir()).glob("kube-*")) == before  # the key went with its temporary folder
