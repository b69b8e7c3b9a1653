"""The operator's derived settings and its TLS set-up from kubeconfig data."""

from __future__ import annotations

import base64
import subprocess
import tempfile
from pathlib import Path

import kopf
import pytest

from functions.operator.kube import ssl_context
from functions.operator.settings import OperatorSettings
from lib.common.settings import ConfigError

BASE = {"NOTIFY_ADMIN_TOKEN": "t"}


def test_the_mirror_namespace_is_watched_too_unless_everything_is() -> None:
    named = OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "erp, shop", "OPERATOR_MIRROR_NAMESPACE": "m"})
    assert named.watched_namespaces == ("erp", "shop", "m")
    already = OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "erp,m", "OPERATOR_MIRROR_NAMESPACE": "m"})
    assert already.watched_namespaces == ("erp", "m")
    everything = OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "*", "OPERATOR_MIRROR_NAMESPACE": "m"})
    assert everything.watched_namespaces == ()
    assert OperatorSettings.from_env({**BASE, "OPERATOR_NAMESPACES": "erp"}).watched_namespaces == ("erp",)


@pytest.mark.parametrize("value", [None, "", " , ", "*,erp", "erp, *"])
def test_watching_every_namespace_is_never_a_default(value: str | None) -> None:
    # Cluster-wide (a ClusterRole that reads Secrets everywhere) only with OPERATOR_NAMESPACES=* and nothing else.
    environ = BASE if value is None else {**BASE, "OPERATOR_NAMESPACES": value}
    with pytest.raises(ConfigError, match="OPERATOR_NAMESPACES"):
        OperatorSettings.from_env(environ)


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
