"""The operator in the chart: off by default; when on, one Recreate replica with its own ServiceAccount, exactly
the RBAC it needs (in the release namespace by default, per listed namespace, or cluster-wide only when asked
for), the FrappeSite CRD, and NetworkPolicies."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from functions.operator.settings import OperatorSettings
from tests.chart.conftest import (
    DEV,
    NAMESPACE,
    PRODUCTION_VALUES,
    ROOT,
    by_kind,
    containers,
    env_of,
    named,
    pod_spec,
    render,
    render_fails,
    strict_crd_schema,
)

OPERATOR = "rel-notify-operator"
NAMESPACED_RULES = [
    {"apiGroups": ["notify.dev"], "resources": ["frappesites"], "verbs": ["get", "list", "watch", "patch"]},
    {"apiGroups": ["notify.dev"], "resources": ["frappesites/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
MIRROR_RULES = [{"apiGroups": ["notify.dev"], "resources": ["frappesites"], "verbs": ["create"]}]


def operator_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator"
        or o["metadata"]["name"].startswith(OPERATOR)
    ]


def enabled(*sets: str) -> list[dict[str, Any]]:
    return render(DEV, ("operator.enabled=true", *sets))


def operator_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return env_of(next(containers(named(objects, "Deployment", OPERATOR))))


def operator_settings(objects: list[dict[str, Any]]) -> OperatorSettings:
    """What the operator makes of the environment the chart gives it (each secret replaced by a stand-in)."""
    env = {k: v if isinstance(v, str) else "secret" for k, v in operator_env(objects).items()}
    return OperatorSettings.from_env(env)


def roles(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    return {(r["metadata"]["namespace"], r["metadata"]["name"]): r["rules"] for r in by_kind(objects, "Role")}


def test_the_operator_is_off_by_default() -> None:
    assert operator_objects(render(DEV)) == []


def test_one_recreate_replica_with_its_settings() -> None:
    objects = enabled("operator.publicApiUrl=https://notify.example.com")
    deployment = named(objects, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = pod_spec(deployment)
    assert spec["serviceAccountName"] == OPERATOR and spec["automountServiceAccountToken"] is True
    (container,) = containers(deployment)
    env = env_of(container)
    assert env["NOTIFY_API_URL"] == "http://rel-notify-api:80"
    assert env["NOTIFY_PUBLIC_API_URL"] == "https://notify.example.com"
    assert env["OPERATOR_NAMESPACES"] == NAMESPACE and env["OPERATOR_MIRROR_NAMESPACE"] == NAMESPACE
    assert env["OPERATOR_HTTP_PORT"] == "8080" and env["OPERATOR_SYNC_INTERVAL_SECONDS"] == "60"
    api_env = env_of(next(containers(named(objects, "Deployment", "rel-notify-api"))))
    assert env["NOTIFY_ADMIN_TOKEN"] == api_env["NOTIFY_ADMIN_TOKEN"]  # the same Secret and key as the API's
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert named(objects, "ServiceAccount", OPERATOR)["automountServiceAccountToken"] is True


def test_by_default_it_watches_the_release_namespace_and_nothing_is_cluster_wide() -> None:
    objects = enabled()
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    assert roles(objects) == {(NAMESPACE, OPERATOR): NAMESPACED_RULES, (NAMESPACE, f"{OPERATOR}-mirror"): MIRROR_RULES}
    for binding in by_kind(objects, "RoleBinding"):
        assert binding["metadata"]["namespace"] == NAMESPACE
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    # ...and the operator watches exactly where its Roles are.
    assert operator_settings(objects).watched_namespaces == (NAMESPACE,)


def test_cluster_wide_only_when_asked_for_and_exactly_what_it_calls() -> None:
    objects = enabled("operator.watchNamespaces={*}")
    role = named(objects, "ClusterRole", f"{OPERATOR}-{NAMESPACE}")
    assert role["rules"] == NAMESPACED_RULES
    binding = named(objects, "ClusterRoleBinding", f"{OPERATOR}-{NAMESPACE}")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    assert roles(objects) == {(NAMESPACE, f"{OPERATOR}-mirror"): MIRROR_RULES}
    assert operator_env(objects)["OPERATOR_NAMESPACES"] == "*"
    assert operator_settings(objects).watched_namespaces == ()  # kopf's clusterwide
    message = render_fails(DEV, ("operator.enabled=true", "operator.watchNamespaces={*,erp}"))
    assert '"*" (every namespace) stands alone' in message
    # The production example chooses it in so many words.
    production = render((str(PRODUCTION_VALUES),))
    assert named(production, "ClusterRole", f"{OPERATOR}-{NAMESPACE}")["rules"] == NAMESPACED_RULES


def test_secrets_are_read_by_name_never_listed_or_watched() -> None:
    for objects in (enabled(), enabled("operator.watchNamespaces={*}")):
        for rbac in [*by_kind(objects, "Role"), *by_kind(objects, "ClusterRole")]:
            for rule in rbac["rules"]:
                if "secrets" in rule["resources"]:
                    assert set(rule["verbs"]) == {"get", "create", "patch"}, rbac["metadata"]["name"]


def test_watched_namespaces_get_roles_and_nothing_cluster_wide() -> None:
    objects = enabled("operator.watchNamespaces={erp,shop}", "operator.mirrorNamespace=sites")
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    assert roles(objects) == {
        ("erp", OPERATOR): NAMESPACED_RULES,
        ("shop", OPERATOR): NAMESPACED_RULES,
        ("sites", OPERATOR): NAMESPACED_RULES,  # the operator watches the mirror namespace too
        ("sites", f"{OPERATOR}-mirror"): MIRROR_RULES,
    }
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(objects, "RoleBinding")}
    assert bindings == set(roles(objects))
    env = operator_env(objects)
    assert env["OPERATOR_NAMESPACES"] == "erp,shop" and env["OPERATOR_MIRROR_NAMESPACE"] == "sites"
    assert operator_settings(objects).watched_namespaces == ("erp", "shop", "sites")


def test_mirroring_can_be_turned_off() -> None:
    objects = enabled("operator.mirrorNamespace=-")
    assert operator_env(objects)["OPERATOR_MIRROR_NAMESPACE"] == ""
    assert roles(objects) == {(NAMESPACE, OPERATOR): NAMESPACED_RULES}  # no mirror Role: it creates no FrappeSite


def crd(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return named(objects, "CustomResourceDefinition", "frappesites.notify.dev")


def test_the_crd_has_status_printer_columns_and_is_kept_on_uninstall() -> None:
    found = crd(enabled())
    assert found["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (version,) = found["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Site", "Phase", "Channels", "Age"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["required"] == ["siteName"] and spec["properties"]["siteName"]["x-kubernetes-validations"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Ready", "Suspended", "Error"]
    assert not any("key" in name.lower() and name != "keyRotation" for name in status)  # never the key itself
    assert "CustomResourceDefinition" not in {o["kind"] for o in enabled("operator.installCRD=false")}


def test_the_example_is_valid_and_bad_specs_are_not() -> None:
    schema = strict_crd_schema(crd(enabled())["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    example = yaml.safe_load((ROOT / "examples" / "frappesite.yaml").read_text())
    jsonschema.validate(example | {"metadata": {}, "apiVersion": None, "kind": None}, _document(schema))
    for bad in ({"siteName": "Not A Host"}, {"siteName": "a.example.com", "enabledChannels": ["sms"]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"spec": bad}, _document(schema))


def _document(schema: dict[str, Any]) -> dict[str, Any]:
    # The object's apiVersion/kind/metadata are the API server's to check, not the CRD schema's.
    props = {**schema["properties"], "apiVersion": {}, "kind": {}, "metadata": {}}
    return {**schema, "properties": props}


def test_network_policies_let_the_operator_reach_the_api_and_kubernetes() -> None:
    objects = render((str(PRODUCTION_VALUES),))
    policy = named(objects, "NetworkPolicy", OPERATOR)
    egress = json.dumps(policy["spec"]["egress"])
    assert '"app.kubernetes.io/component": "api"' in egress and "6443" in egress
    api_from = named(objects, "NetworkPolicy", "rel-notify-api")["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {**_selector("operator")}}} in api_from  # apiFrom is set there


def _selector(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "notify",
        "app.kubernetes.io/instance": "rel",
        "app.kubernetes.io/component": component,
    }
