"""What the chart renders: autoscaling wired to the right topic and group, secure pods, secrets kept out of
plain values, a strict values schema, and settings the deployables accept."""

from __future__ import annotations

import functools
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions.api.settings import ApiSettings
from lib.delivery.channels import ChannelWorkerSettings
from lib.domain.vocabulary import Channel
from tests.chart.conftest import (
    CHART,
    DEV,
    DEV_VALUES,
    KUBE_VERSION,
    NAMESPACE,
    POD_KINDS,
    PRODUCTION_VALUES,
    RELEASE,
    ROOT,
    by_kind,
    component,
    containers,
    env_of,
    named,
    pod_spec,
    render,
    render_fails,
    render_text,
    run_helm,
)

FULLNAME = f"{RELEASE}-notify"
CHANNELS = tuple(channel.value for channel in Channel)
SECRET_ENV = re.compile(r"(PASSWORD|TOKEN|_KEY$|^DATABASE_URL$)")


def partitions(objects: list[dict[str, Any]]) -> int:
    """The partition count the topics job creates."""
    job = named(objects, "Job", f"{FULLNAME}-topics")
    args = next(containers(job))["args"]
    return int(next(a for a in args if a.startswith("--partitions=")).split("=", 1)[1])


# --- KEDA ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "sets", "prefix"),
    [
        (DEV, (), "notifications"),
        ((str(PRODUCTION_VALUES),), (), "notifications"),
        (
            DEV,
            ("topicPrefix=acme", "workers.email.consumerGroup=acme-mail", "workers.whatsapp.consumerGroup=acme-wa"),
            "acme",
        ),
    ],
    ids=["dev", "production", "custom-names"],
)
def test_each_scaledobject_reads_its_own_topic_and_group(
    values: tuple[str, ...], sets: tuple[str, ...], prefix: str
) -> None:
    objects = render(values, sets)
    for channel in CHANNELS:
        scaled = named(objects, "ScaledObject", f"{FULLNAME}-{channel}")
        worker = named(objects, "Deployment", f"{FULLNAME}-{channel}")
        env = env_of(next(containers(worker)))
        assert scaled["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"{FULLNAME}-{channel}",
        }
        (trigger,) = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["topic"] == f"{prefix}-{channel}"
        assert env["NOTIFY_TOPIC_PREFIX"] == prefix
        # One value feeds both: the worker's group.id and the group whose lag KEDA reads.
        assert meta["consumerGroup"] == env["KAFKA_CONSUMER_GROUP"]
        assert (
            meta["bootstrapServers"].split(",")[0].split(".")[0]
            == env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].split(".")[0]
        )
        assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values must be strings"
        assert scaled["spec"]["maxReplicaCount"] <= partitions(objects)
        assert scaled["spec"]["fallback"]["replicas"] >= 1
        behavior = scaled["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
        assert behavior["stabilizationWindowSeconds"] >= 60
    groups = {
        named(objects, "ScaledObject", f"{FULLNAME}-{c}")["spec"]["triggers"][0]["metadata"]["consumerGroup"]
        for c in CHANNELS
    }
    assert len(groups) == 2


def test_default_workers_scale_to_zero_and_keda_owns_their_replicas() -> None:
    objects = render(DEV)
    for channel in CHANNELS:
        assert named(objects, "ScaledObject", f"{FULLNAME}-{channel}")["spec"]["minReplicaCount"] == 0
        assert "replicas" not in named(objects, "Deployment", f"{FULLNAME}-{channel}")["spec"]


def test_max_replicas_above_partitions_fails_the_render_clearly() -> None:
    message = render_fails(DEV, ("workers.email.autoscaling.maxReplicaCount=7",))
    assert "workers.email.autoscaling.maxReplicaCount (7) is above kafka.topics.partitions (6)" in message
    message = render_fails(DEV, ("kafka.topics.partitions=2",))
    assert "maxReplicaCount (6) is above kafka.topics.partitions (2)" in message
    # Raising the partitions makes the same maximum legal.
    assert render(DEV, ("workers.email.autoscaling.maxReplicaCount=7", "kafka.topics.partitions=7"))


def test_without_keda_workers_get_a_fixed_replica_count() -> None:
    objects = render(DEV, ("keda.enabled=false", "workers.email.replicaCount=3", "workers.whatsapp.replicaCount=2"))
    assert not by_kind(objects, "ScaledObject") and not by_kind(objects, "TriggerAuthentication")
    assert named(objects, "Deployment", f"{FULLNAME}-email")["spec"]["replicas"] == 3
    assert named(objects, "Deployment", f"{FULLNAME}-whatsapp")["spec"]["replicas"] == 2


def test_trigger_authentication_only_with_sasl_or_tls() -> None:
    assert not by_kind(render(DEV), "TriggerAuthentication")
    objects = render((str(PRODUCTION_VALUES),))
    (auth,) = by_kind(objects, "TriggerAuthentication")
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    assert params["password"] == {"parameter": "password", "name": "notify-kafka-user", "key": "password"}
    assert params["ca"]["name"] == "kafka-cluster-ca-cert"
    assert auth["spec"]["env"] == [{"parameter": "username", "name": "KAFKA_SASL_USERNAME", "containerName": "worker"}]
    for channel in CHANNELS:
        trigger = named(objects, "ScaledObject", f"{FULLNAME}-{channel}")["spec"]["triggers"][0]
        assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
        assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"


# --- modes and hooks ---------------------------------------------------------------------------------------


def hook(objects: list[dict[str, Any]], name: str) -> str:
    value: str = named(objects, "Job", f"{FULLNAME}-{name}")["metadata"]["annotations"]["helm.sh/hook"]
    return value


def test_embedded_backends_are_statefulsets_and_hooks_run_after_they_exist() -> None:
    objects = render(DEV)
    kafka = named(objects, "StatefulSet", f"{FULLNAME}-kafka")
    assert next(containers(kafka))["image"].startswith("apache/kafka:")
    assert kafka["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert named(objects, "Service", f"{FULLNAME}-kafka-headless")["spec"]["clusterIP"] == "None"
    postgres = named(objects, "StatefulSet", f"{FULLNAME}-postgresql")
    assert next(containers(postgres))["image"].startswith("postgres:")
    assert hook(objects, "migrations") == "post-install,pre-upgrade"
    assert hook(objects, "topics") == "post-install,pre-upgrade"
    # ...so on the first install the API's init containers migrate and create the topics before it serves.
    api = named(objects, "Deployment", f"{FULLNAME}-api")
    assert [c["command"][-1] for c in pod_spec(api)["initContainers"]] == ["migrate", "create-topics"]


def test_external_backends_use_pre_install_hooks_and_no_statefulsets() -> None:
    objects = render((str(PRODUCTION_VALUES),))
    assert not by_kind(objects, "StatefulSet")
    assert hook(objects, "migrations") == "pre-install,pre-upgrade"
    assert hook(objects, "topics") == "pre-install,pre-upgrade"
    assert "initContainers" not in pod_spec(named(objects, "Deployment", f"{FULLNAME}-api"))
    env = env_of(next(containers(named(objects, "Deployment", f"{FULLNAME}-email"))))
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "notify-db-app", "key": "uri"}}
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SSL_CA_LOCATION"] == "/etc/notify/kafka-ca/ca.crt"
    assert partitions(objects) == 12


def test_production_api_has_three_replicas_ingress_tls_and_a_pdb() -> None:
    objects = render((str(PRODUCTION_VALUES),))
    assert named(objects, "Deployment", f"{FULLNAME}-api")["spec"]["replicas"] == 3
    ingress = named(objects, "Ingress", f"{FULLNAME}-api")
    assert ingress["spec"]["tls"] == [{"hosts": ["notify.example.com"], "secretName": "notify-example-com-tls"}]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert named(objects, "PodDisruptionBudget", f"{FULLNAME}-api")["spec"]["minAvailable"] == 1
    assert len(by_kind(objects, "ServiceMonitor")) == 3
    assert not by_kind(render(DEV), "PodDisruptionBudget"), "one API replica: no PDB"


def test_helm_test_pod_runs_only_against_the_sandbox() -> None:
    (pod,) = [o for o in render(DEV) if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert next(containers(pod))["command"] == ["python", "/smoke/smoke_test.py"]
    assert not [o for o in render((str(PRODUCTION_VALUES),)) if o["kind"] == "Pod"]


# --- the sandbox: only when asked for ------------------------------------------------------------------------

PROVIDER_SECRETS = (
    "workers.email.sendgrid.existingSecret=providers",
    "workers.whatsapp.wasender.existingSecret=providers",
)


def provider_urls(objects: list[dict[str, Any]]) -> dict[str, str]:
    email = env_of(next(containers(named(objects, "Deployment", f"{FULLNAME}-email"), init=False)))
    whatsapp = env_of(next(containers(named(objects, "Deployment", f"{FULLNAME}-whatsapp"), init=False)))
    return {"email": email["SENDGRID_API_URL"], "whatsapp": whatsapp["WASENDER_API_URL"]}


def test_a_plain_install_asks_for_the_provider_secrets_or_the_sandbox() -> None:
    message = render_fails()
    assert "sandbox.enabled is false (the default)" in message
    assert "workers.email.sendgrid.existingSecret" in message and "workers.whatsapp.wasender.existingSecret" in message
    assert "--values charts/notify/ci/dev-values.yaml" in message and "--set sandbox.enabled=true" in message
    assert (ROOT / "charts" / "notify" / "ci" / "dev-values.yaml") == DEV_VALUES  # the file the message names
    only = render_fails(sets=(PROVIDER_SECRETS[0],))  # one channel's Secret named: only the other is asked for
    assert "workers.whatsapp.wasender.existingSecret" in only and "workers.email.sendgrid.existingSecret" not in only


def test_by_default_the_workers_deliver_to_the_real_providers_and_no_sandbox_runs() -> None:
    objects = render(sets=PROVIDER_SECRETS)
    assert not [o for o in objects if o["metadata"]["name"] == f"{FULLNAME}-sandbox"]
    assert provider_urls(objects) == {
        "email": "https://api.sendgrid.com",
        "whatsapp": "https://www.wasenderapi.com/api",
    }
    assert not by_kind(objects, "Pod"), "no helm test without the sandbox: it would send a real message"
    (generated,) = by_kind(objects, "Secret")
    assert set(generated["data"]) == {
        "admin-token",
        "postgres-password",
        "key-encryption-keys",
        "media-signing-key",
        "wasender-webhook-secret",
    }  # no fake provider keys


def test_the_dev_values_turn_the_sandbox_on() -> None:
    objects = render(DEV)
    sandbox = f"{FULLNAME}-sandbox"
    assert named(objects, "Deployment", sandbox) and named(objects, "Service", sandbox)
    assert provider_urls(objects) == {"email": f"http://{sandbox}:8090", "whatsapp": f"http://{sandbox}:8090/api"}


def test_the_sandbox_accepts_exactly_the_keys_its_workers_send_with() -> None:
    """Found by running the chart (tests/node): the fake providers check the API key, so each must be given the
    Secret key its worker sends; without it every delivery failed with 401."""
    for sets in ((), ("workers.email.sendgrid.existingSecret=mine",)):
        objects = render(DEV, sets)
        sandbox = env_of(next(containers(named(objects, "Deployment", f"{FULLNAME}-sandbox"), init=False)))
        email = env_of(next(containers(named(objects, "Deployment", f"{FULLNAME}-email"), init=False)))
        whatsapp = env_of(next(containers(named(objects, "Deployment", f"{FULLNAME}-whatsapp"), init=False)))
        assert sandbox["SANDBOX_SENDGRID_API_KEY"] == email["SENDGRID_API_KEY"]
        assert sandbox["SANDBOX_WASENDER_API_KEY"] == whatsapp["WASENDER_API_KEY"]
    assert email["SENDGRID_API_KEY"]["secretKeyRef"]["name"] == "mine"


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    maps = [o for o in render(DEV) if o["kind"] == "ConfigMap" and component(o) == "dashboards"]
    assert len(maps) == 2
    metrics_in_code = set(
        re.findall(r'"(notify_[a-z_]+)"', "".join(p.read_text() for p in (ROOT / "lib").rglob("*.py")))
    )
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (text,) = cm["data"].values()
        dashboard = yaml.safe_load(text)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        used = {re.sub(r"_(bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"\bnotify_[a-z_]+", e)}
        assert used <= metrics_in_code, f"dashboard metrics not exported by notify: {used - metrics_in_code}"


# --- pods: security, resources, probes ------------------------------------------------------------------------


def test_no_container_can_run_as_root(scenario: list[dict[str, Any]]) -> None:
    for obj in scenario:
        if obj["kind"] not in POD_KINDS:
            continue
        pod = pod_spec(obj).get("securityContext", {})
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", obj["metadata"]["name"]
        # Only the operator talks to the Kubernetes API (with its own ServiceAccount and RBAC): only it gets a token.
        needs_token = obj["metadata"]["name"].endswith("-operator")
        assert pod_spec(obj).get("automountServiceAccountToken") is needs_token, obj["metadata"]["name"]
        for c in containers(obj):
            sc = c.get("securityContext", {})
            where = f"{obj['metadata']['name']}/{c['name']}"
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod.get("runAsUser", 1)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where


def test_every_container_has_resources_and_long_running_ones_have_probes(scenario: list[dict[str, Any]]) -> None:
    for obj in scenario:
        if obj["kind"] not in POD_KINDS:
            continue
        for c in containers(obj):
            where = f"{obj['metadata']['name']}/{c['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(bound, {})), f"{where}: {bound}"
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for c in containers(obj, init=False):
                for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                    assert probe in c, f"{obj['metadata']['name']}/{c['name']}: {probe}"


def test_notify_probes_use_the_health_routes() -> None:
    for obj in render(DEV):
        if obj["kind"] == "Deployment":
            c = next(containers(obj))
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_network_policies_default_deny_and_only_the_api_is_open(scenario: list[dict[str, Any]]) -> None:
    policies = {p["metadata"]["name"]: p for p in by_kind(scenario, "NetworkPolicy")}
    deny = policies[f"{FULLNAME}-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            if name != f"{FULLNAME}-api":
                assert rule.get("from"), f"{name} admits traffic from anywhere"


# --- secrets ------------------------------------------------------------------------------------------------


def test_secrets_never_appear_as_plain_values(scenario: list[dict[str, Any]]) -> None:
    generated = {}
    for secret in by_kind(scenario, "Secret"):
        generated.update(secret.get("data", {}))
    text = yaml.safe_dump_all([o for o in scenario if o["kind"] != "Secret"])
    for key, encoded in generated.items():
        assert encoded not in text, f"{key} leaks out of its Secret"
    for obj in scenario:
        if obj["kind"] not in POD_KINDS:
            continue
        for c in containers(obj):
            for name, value in env_of(c).items():
                if SECRET_ENV.search(name):
                    assert isinstance(value, dict) and "secretKeyRef" in value, f"{c['name']}: {name} is a plain value"


def test_values_files_hold_no_secret() -> None:
    def leaves(node: Any, path: str = "") -> list[tuple[str, Any]]:
        if isinstance(node, dict):
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}" if path else k)]
        return [(path, node)]

    for values in (CHART / "values.yaml", PRODUCTION_VALUES):
        for path, _value in leaves(yaml.safe_load(values.read_text())):
            key = path.rsplit(".", 1)[-1]
            if re.search(r"(?i)(password|token|apikey|api_key|dsn)$", key):
                pytest.fail(f"{values.name}: {path} looks like a secret held as a value")


def test_generated_secret_is_kept_and_reused() -> None:
    template = (CHART / "templates" / "secret.yaml").read_text()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert "helm.sh/resource-policy: keep" in template
    assert 'lookup "v1" "Secret"' in helpers
    (secret,) = by_kind(render(DEV), "Secret")
    assert set(secret["data"]) == {
        "admin-token",
        "postgres-password",
        "sendgrid-api-key",
        "wasender-api-key",
        "key-encryption-keys",
        "media-signing-key",
        "wasender-webhook-secret",
    }
    assert not by_kind(render((str(PRODUCTION_VALUES),)), "Secret"), "every secret of production is an existing Secret"


def test_notes_tell_how_to_reach_the_api_and_get_the_token(tmp_path: Path) -> None:
    chart = tmp_path / "notify"
    shutil.copytree(CHART, chart)
    shutil.copy(CHART / "templates" / "NOTES.txt", chart / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    args = [
        "template",
        RELEASE,
        str(chart),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "-s",
        "templates/zz-notes.yaml",
    ]
    notes = yaml.safe_load(run_helm(*args, "--values", str(DEV_VALUES)).stdout)["data"]["notes"]
    assert f"port-forward service/{FULLNAME}-api" in notes
    assert f"get secret {FULLNAME}-secrets -o jsonpath='{{.data.admin-token}}'" in notes
    prod = yaml.safe_load(run_helm(*args, "--values", str(PRODUCTION_VALUES)).stdout)["data"]["notes"]
    assert "https://notify.example.com/" in prod and "get secret notify-admin" in prod


# --- values schema ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("api.replicaCont=3", "additional properties 'replicaCont' not allowed"),
        ("workers.emial.enabled=false", "additional properties 'emial' not allowed"),
        ("workers.email.replicaCont=3", "additional properties 'replicaCont' not allowed"),
        ("workerDefaults.replicaCont=3", "additional properties 'replicaCont' not allowed"),
        ("email.enabled=false", "additional properties 'email' not allowed"),  # the paths of chart 0.2
        ("kafka.mode=embeded", "kafka/mode"),
        ("workers.email.autoscaling.lagThreshold=50", "got number, want string"),
        ("workerDefaults.autoscaling.lagThreshold=50", "got number, want string"),
        ("kafka.external.securityProtocol=SASL", "securityProtocol"),
    ],
)
def test_schema_rejects_typos(setting: str, complaint: str) -> None:
    assert complaint in render_fails(DEV, (setting,))


def commented_keys(text: str) -> dict[str, list[str]]:
    """Each key of a YAML text by dotted path, with the comment lines right above it (stripped)."""
    found: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
            continue
        key = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if key:
            indent = len(key.group(1))
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, key.group(2))]
            found[".".join(k for _, k in stack)] = comments
        comments = []
    return found


def documented_paths(text: str) -> set[str]:
    """Dotted paths of the keys that have a `# -- description` comment right above them (a banner, `# -----`,
    documents nothing)."""
    return {path for path, comments in commented_keys(text).items() if any(c.startswith("# -- ") for c in comments)}


def test_every_value_is_documented_in_values_and_schema() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = documented_paths(text)
    schema = json.loads((CHART / "values.schema.json").read_text())

    def check(values: dict[str, Any], node: dict[str, Any], prefix: str) -> None:
        assert node.get("additionalProperties") is False, f"{prefix or 'values'}: the schema must reject unknown keys"
        for key, value in values.items():
            path = f"{prefix}.{key}" if prefix else key
            assert key in node["properties"], f"{path} is missing from values.schema.json"
            child = resolve(schema, node["properties"][key])
            if isinstance(value, dict) and "properties" in child and path not in documented:
                check(value, child, path)
            else:
                assert path in documented, f"values.yaml: {path} has no '# --' description"
                assert child.get("description"), f"values.schema.json: {path} has no description"

    check(yaml.safe_load(text), schema, "")


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its local `$ref` followed (a workers entry points at the settings of workerDefaults)."""
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_every_worker_setting_can_be_set_for_one_channel() -> None:
    """Each `workers` entry accepts every `workerDefaults` key (with the same schema), besides its own keys."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    shared = schema["properties"]["workerDefaults"]["properties"]
    entries = schema["properties"]["workers"]["properties"]
    assert set(entries) == set(yaml.safe_load((CHART / "values.yaml").read_text())["workers"]) == set(CHANNELS)
    for channel, entry in entries.items():
        missing = set(shared) - set(entry["properties"])
        assert not missing, f"workers.{channel} cannot override {sorted(missing)}"
        for key, setting in shared.items():
            own = resolve(schema, entry["properties"][key])
            if key == "resources":  # merged over the defaults: either half alone is enough
                assert {k: resolve(schema, v) for k, v in own["properties"].items()} == setting["properties"]
            else:
                assert own == setting, f"workers.{channel}.{key}"


def test_each_worker_is_its_entry_merged_over_the_defaults() -> None:
    objects = render(
        DEV,
        (
            "workerDefaults.concurrency=8",
            "workers.whatsapp.concurrency=4",
            "workerDefaults.rateLimitPerSecond=5",
            "workers.email.rateLimitPerSecond=0",  # a zero in the entry wins too (as does a false)
            "workerDefaults.podAnnotations.shared=yes",
            "workers.email.podAnnotations.own=yes",
            "workerDefaults.tolerations[0].key=shared",
            "workers.email.tolerations[0].key=own",  # a list is replaced, not merged
            "workers.email.resources.limits.cpu=2",  # a map is merged key by key
        ),
    )
    email, whatsapp = (named(objects, "Deployment", f"{FULLNAME}-{c}") for c in CHANNELS)
    email_env, whatsapp_env = (env_of(next(containers(d, init=False))) for d in (email, whatsapp))
    assert (email_env["WORKER_CONCURRENCY"], whatsapp_env["WORKER_CONCURRENCY"]) == ("8", "4")
    assert (email_env["PROVIDER_RATE_PER_SEC"], whatsapp_env["PROVIDER_RATE_PER_SEC"]) == ("0", "1")
    annotations = [d["spec"]["template"]["metadata"]["annotations"] for d in (email, whatsapp)]
    assert annotations[0]["shared"] == annotations[0]["own"] == "yes" and annotations[1]["shared"] == "yes"
    assert "own" not in annotations[1]
    assert [pod_spec(d)["tolerations"] for d in (email, whatsapp)] == [[{"key": "own"}], [{"key": "shared"}]]
    resources = [next(containers(d))["resources"] for d in (email, whatsapp)]
    assert resources[0] == {"requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": 2, "memory": "512Mi"}}
    assert resources[1] == {"requests": {"cpu": "50m", "memory": "160Mi"}, "limits": {"cpu": "500m", "memory": "384Mi"}}


def test_templates_take_the_channels_from_the_workers_map() -> None:
    """No template names a channel: each one comes from `workers` (comments and the prose of NOTES.txt aside)."""
    names = re.compile(r"\b(" + "|".join(CHANNELS) + r")\b", re.IGNORECASE)
    for path in sorted((CHART / "templates").rglob("*")):
        if not path.is_file():
            continue
        code = re.sub(r"\{\{-? */\*.*?\*/ *-?\}\}", "", path.read_text(), flags=re.DOTALL)
        if path.name == "NOTES.txt":  # text for people: only its template actions count
            code = "\n".join(re.findall(r"\{\{.*?\}\}", code, flags=re.DOTALL))
        for line in code.splitlines():
            if not line.lstrip().startswith("#"):
                assert not names.search(line), f"{path.relative_to(CHART)}: {line.strip()}"


# --- the deployables accept what the chart gives them -------------------------------------------------------


SETTINGS: dict[str, Callable[[dict[str, str]], object]] = {
    "api": ApiSettings.from_env,
    **{channel.value: functools.partial(ChannelWorkerSettings.from_env, channel) for channel in Channel},
}
SOURCES = [
    *(ROOT / "lib").rglob("*.py"),
    *(ROOT / "functions").rglob("*.py"),
    ROOT / "README.md",
    CHART / "files" / "smoke_test.py",
]


STAND_INS = {
    "DATABASE_URL": "postgresql://notify:secret@db.example:5432/notify",
    "NOTIFY_KEY_ENCRYPTION_KEYS": "c3RhbmQtaW4ga2V5IG9mIDMyIGJ5dGVzLCBmb3IgdGU=",  # a Fernet key's shape
}


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment with each secret replaced by a stand-in of the right shape."""
    env = {}
    for name, value in env_of(container).items():
        if isinstance(value, str):
            env[name] = value
        else:
            env[name] = STAND_INS.get(name, "secret")
    return env


@pytest.mark.parametrize("values", [DEV, (str(PRODUCTION_VALUES),)], ids=["dev", "production"])
def test_deployables_accept_the_rendered_settings(values: tuple[str, ...]) -> None:
    objects = render(values)
    for name, settings in SETTINGS.items():
        container = next(containers(named(objects, "Deployment", f"{FULLNAME}-{name}"), init=False))
        loaded = settings(plain_env(container))
        assert loaded is not None
    api = ApiSettings.from_env(plain_env(next(containers(named(objects, "Deployment", f"{FULLNAME}-api"), init=False))))
    assert api.host == "0.0.0.0" and api.port == 8080


def test_every_env_var_the_chart_sets_is_read_by_notify() -> None:
    known = "\n".join(p.read_text() for p in SOURCES if p.exists())
    names: set[str] = set()
    for values in (DEV, (str(PRODUCTION_VALUES),)):
        for obj in render(values):
            if obj["kind"] in POD_KINDS and component(obj) not in ("kafka", "postgresql"):
                for c in containers(obj):
                    names |= set(env_of(c))
    unknown = sorted(n for n in names if n not in known)
    assert not unknown, f"the chart sets variables no deployable reads: {unknown}"


def test_each_documented_value_reaches_its_variable() -> None:
    """Every `-> VAR` in values.yaml: changing the value changes VAR in the component that owns the value."""
    text = (CHART / "values.yaml").read_text()
    mapping = mapped_values(text)
    defaults = yaml.safe_load(text)
    overrides: dict[str, Any] = {}
    expected: dict[tuple[str, str], str] = {}
    for n, (path, var) in enumerate(sorted(mapping.items())):
        owners = value_owners(defaults, path)
        if not owners or "existingSecret" in path or path.endswith("apiUrl"):
            continue
        current = get_path(defaults, path)
        if isinstance(current, list):  # a list value is one comma-separated variable; helm's --set a={x}
            set_path(overrides, path, f"{{10.{n}.0.0/16}}")
            expected.update({(owner, var): f"10.{n}.0.0/16" for owner in owners})
            continue
        new: Any = current + 7 + n if isinstance(current, int | float) else f"x{n}@example.com"
        set_path(overrides, path, new)
        expected.update({(owner, var): str(new) for owner in owners})
    overrides.setdefault("sandbox", {})["enabled"] = False
    overrides["workers"]["email"].setdefault("sendgrid", {}).update(existingSecret="s")
    overrides["workers"]["whatsapp"].setdefault("wasender", {}).update(existingSecret="s")
    sets = tuple(f"{p}={v}" for p, v in flatten(overrides))
    objects = render(
        sets=(
            *sets,
            "workers.email.terminationGracePeriodSeconds=300",
            "workers.whatsapp.terminationGracePeriodSeconds=300",
        )
    )
    for (owner, var), value in expected.items():
        if owner == "sandbox":
            continue
        container = next(containers(named(objects, "Deployment", f"{FULLNAME}-{owner}"), init=False))
        assert env_of(container).get(var) == value, f"{owner}: {var}"
    assert len(expected) >= 30


def value_owners(defaults: dict[str, Any], path: str) -> list[str]:
    """The deployables whose variable a value sets: a component's own values go to it, a `workers` entry's to that
    worker, a `workerDefaults` value to every worker whose entry does not set the same key itself."""
    top, _, rest = path.partition(".")
    if top in ("api", "sandbox"):
        return [top]
    if top == "workers":
        return [rest.split(".")[0]]
    if top == "workerDefaults":
        return [channel for channel, entry in defaults["workers"].items() if not has_path(entry, rest)]
    return []


def has_path(node: Any, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def mapped_values(text: str) -> dict[str, str]:
    """Each value whose comment ends in `-> VAR`: the variable it sets (the last arrow above the key)."""
    found: dict[str, str] = {}
    for path, comments in commented_keys(text).items():
        arrows = [m.group(1) for c in comments if (m := re.search(r"-> ([A-Z_]+)\s*$", c))]
        if arrows:
            found[path] = arrows[-1]
    return found


def get_path(node: Any, path: str) -> Any:
    for part in path.split("."):
        node = node[part]
    return node


def set_path(node: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def flatten(node: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in node.items():
        path = f"{prefix}.{k}" if prefix else k
        out += flatten(v, path) if isinstance(v, dict) else [(path, v)]
    return out


def test_rendering_is_deterministic_apart_from_generated_secrets() -> None:
    first = [o for o in render(DEV) if o["kind"] != "Secret"]
    args = ("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION)
    again = [o for o in yaml.safe_load_all(run_helm(*args, "--values", *DEV).stdout) if o and o["kind"] != "Secret"]
    assert first == again
    assert render_text(DEV)


SETTINGS_SOURCES = {
    "api": ["functions/api/settings.py", "lib/common/settings.py"],
    "email": [
        "lib/delivery/settings.py",
        "lib/common/settings.py",
        "lib/adapters/providers/sendgrid.py",
    ],
    "whatsapp": [
        "lib/delivery/settings.py",
        "lib/common/settings.py",
        "lib/adapters/providers/wasender.py",
    ],
}
# Settings only the test suite changes (README: "test-only"); the chart keeps their production default.
TEST_ONLY_SETTINGS = {"KEY_BCRYPT_ROUNDS"}
READ_ENV = re.compile(r'env\.(?:text|secret|integer|number|flag)\(\s*"([A-Z0-9_]+)"')


def test_every_setting_a_deployable_reads_can_be_set_by_the_chart() -> None:
    """A new environment variable in a deployable's settings fails here until the chart gains its value."""
    for name, sources in SETTINGS_SOURCES.items():
        read = {m for path in sources for m in READ_ENV.findall((ROOT / path).read_text())}
        rendered: set[str] = set()
        for values in (DEV, (str(PRODUCTION_VALUES),)):
            deployment = named(render(values), "Deployment", f"{FULLNAME}-{name}")
            rendered |= set(env_of(next(containers(deployment, init=False))))
        missing = sorted(read - rendered - TEST_ONLY_SETTINGS)
        assert not missing, f"{name} reads {missing} but the chart never sets them"


def value_descriptions(text: str) -> dict[str, str]:
    """Each documented value's `# -- ` text (continued by the plain comment lines under it), by dotted path.
    Section banners (`# -----`) describe nothing."""
    found: dict[str, str] = {}
    for path, comments in commented_keys(text).items():
        description: str | None = None
        for comment in comments:
            if comment.startswith("# -- "):
                description = comment[5:].strip()
            elif description is not None and not comment.startswith("# -"):
                description = f"{description} {comment[1:].strip()}"
        if description is not None:
            found[path] = description
    return found


def test_the_schema_describes_each_value_as_values_yaml_does() -> None:
    """values.yaml is the source of every description; the schema repeats it word for word (no drift)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, text in value_descriptions((CHART / "values.yaml").read_text()).items():
        node = schema
        for part in path.split("."):
            node = node.get("properties", {}).get(part, {})
        if node:  # entries under `workers` point at workerDefaults' definitions ($ref)
            assert node.get("description") == text, f"{path}: values.yaml says {text!r}"
    assert "-----" not in (CHART / "values.schema.json").read_text()
