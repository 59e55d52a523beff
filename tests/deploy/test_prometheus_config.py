"""The monitoring configuration in deploy/, checked by the real tools:
promtool (Debian package prometheus) validates the Prometheus configuration
and rules and runs the rules' unit tests, amtool (prometheus-alertmanager)
validates the Alertmanager configuration and its routing. No OpenTelemetry
Collector binary is packaged for Debian, so its configuration is checked as
YAML for the pipeline compose relies on.

A real Prometheus scraping the running services is
tests/e2e/test_prometheus_scrape.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from murmur_devstack.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
README = PROMETHEUS_DIR / "README.md"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
COLLECTOR_CONFIG = ROOT / "deploy" / "otel-collector" / "config.yaml"
COMPOSE = ROOT / "docker-compose.yml"

# Scrape job -> the port its /metrics is on (the devstack's default, which is
# also the service's own default and what compose sets).
METRICS_PORTS = {
    "gateway": SERVICES["gateway"].ports["GATEWAY_PORT"],
    "timeline": SERVICES["timeline"].ports["TIMELINE_METRICS_PORT"],
    "cache": SERVICES["cache"].ports["CACHE_METRICS_PORT"],
    "pipeline": SERVICES["pipeline"].ports["PIPELINE_METRICS_PORT"],
    "notifier": SERVICES["notifier"].ports["NOTIFIER_METRICS_PORT"],
    "metrics": SERVICES["metrics"].ports["METRICS_PORT"],
}
# The SLO burn-rate alerts: (long window, short window, burn rate, severity).
BURN_RATE_WINDOWS = [
    ("1h", "5m", "14.4", "page"),
    ("6h", "30m", "6", "page"),
    ("3d", "6h", "1", "ticket"),
]
SLO_BUDGETS = {
    "gateway-availability": "0.001",
    "gateway-latency": "0.01",
    "notifier-delivery-latency": "0.01",
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: run `make install` (it installs the Debian packages "
            "prometheus and prometheus-alertmanager)"
        )
    return path


def _run(*argv: str, cwd: Path = ROOT) -> str:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{output}"
    return output


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _rules() -> list[dict[str, Any]]:
    return [rule for path in RULE_FILES for g in _yaml(path)["groups"] for rule in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


# Prometheus


def test_promtool_check_config() -> None:
    output = _run(_tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    # The rule_files glob picks up every rules file (relative to the config).
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output
    for path in RULE_FILES:
        assert str(path.relative_to(ROOT)) in output


def test_promtool_check_rules() -> None:
    _run(_tool("promtool"), "check", "rules", *map(str, RULE_FILES))


def test_promtool_rule_unit_tests() -> None:
    # Rule paths in the tests are relative to each test file.
    output = _run(_tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert output.count("SUCCESS") == len(RULE_TESTS), output


def test_every_alert_is_unit_tested_where_it_matters() -> None:
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for group in _yaml(path)["tests"]
        for case in group.get("alert_rule_test", [])
    }
    slo_alerts = {rule["alert"] for rule in _alerts() if "slo" in rule["labels"]}
    assert slo_alerts | {"TargetDown", "ServiceDown", "DeadLetters"} <= tested


def test_scrape_jobs_match_services_and_compose() -> None:
    config = _yaml(PROMETHEUS_CONFIG)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    compose = _yaml(COMPOSE)["services"]
    for name, port in METRICS_PORTS.items():
        assert name in compose, f"no compose service {name}"
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [name]
        assert sd["port"] == port, f"{name} scraped on {sd['port']}, serves metrics on {port}"
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager:9093"
    ]
    # Every other scrape target is a compose service too.
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host == "localhost" or host in compose, target


def test_every_alert_has_severity_and_documented_runbook() -> None:
    anchors = {
        re.sub(r"[^a-z0-9-]", "", heading.strip().lower().replace(" ", "-"))
        for heading in re.findall(r"^#+ (.+)$", README.read_text(), re.MULTILINE)
    }
    for rule in _alerts():
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        anchor = annotations["runbook_url"].rpartition("#")[2]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no section {anchor!r} in {README}"


@pytest.mark.parametrize("slo", sorted(SLO_BUDGETS))
def test_slo_alerts_follow_the_multiwindow_multi_burn_rate_pattern(slo: str) -> None:
    """Each SLO: three alerts of one name, page/page/ticket, each the AND of
    its long and short window's error ratio above burn rate x budget."""
    alerts = [rule for rule in _alerts() if rule["labels"].get("slo") == slo]
    assert len({rule["alert"] for rule in alerts}) == 1
    budget = SLO_BUDGETS[slo]
    record = slo.replace("-", "_")
    found = []
    for rule in alerts:
        expr = " ".join(rule["expr"].split())
        match = re.fullmatch(
            rf"slo:{record}:error_ratio_rate(\w+) > \(([\d.]+) \* {re.escape(budget)}\) "
            rf"and slo:{record}:error_ratio_rate(\w+) > \(([\d.]+) \* {re.escape(budget)}\)",
            expr,
        )
        assert match, expr
        long, rate, short, short_rate = match.groups()
        assert rate == short_rate
        assert rule["labels"]["window"] == long
        assert "for" not in rule
        found.append((long, short, rate, rule["labels"]["severity"]))
    assert sorted(found) == sorted(BURN_RATE_WINDOWS)
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    for window in ("5m", "30m", "1h", "6h", "3d"):
        assert f"slo:{record}:error_ratio_rate{window}" in recorded


# Alertmanager


def test_amtool_check_config() -> None:
    _run(_tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            [
                "alertname=GatewayAvailabilityBudgetBurn",
                "slo=gateway-availability",
                "severity=page",
            ],
            "pager",
        ),
        (
            ["alertname=GatewayLatencyBudgetBurn", "slo=gateway-latency", "severity=ticket"],
            "tickets",
        ),
        (["alertname=ServiceDown", "job=cache", "severity=page"], "pager"),
        (["alertname=DeadLetters", "consumer=pipeline", "severity=ticket"], "tickets"),
    ],
)
def test_alertmanager_routes_pages_and_tickets_apart(labels: list[str], receiver: str) -> None:
    output = _run(
        _tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert output.split()[0] == receiver


def test_alertmanager_groups_and_inhibits_tickets_under_pages() -> None:
    config = _yaml(ALERTMANAGER_CONFIG)
    assert config["route"]["group_by"] == ["alertname", "slo", "severity"]
    receivers = {r["name"]: r for r in config["receivers"]}
    for name in ("pager", "tickets"):
        (hook,) = receivers[name]["webhook_configs"]
        assert hook["url"].startswith("http")
    (slo_rule,) = [r for r in config["inhibit_rules"] if r.get("equal") == ["slo"]]
    # Both sides need the label, or alerts without it would count as equal.
    assert 'slo=~".+"' in slo_rule["source_matchers"]
    assert 'slo=~".+"' in slo_rule["target_matchers"]
    assert 'severity="page"' in slo_rule["source_matchers"]
    assert 'severity="ticket"' in slo_rule["target_matchers"]


# OpenTelemetry Collector (no binary here: structure only)


def test_collector_receives_otlp_and_exports_traces_to_jaeger() -> None:
    config = _yaml(COLLECTOR_CONFIG)
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    traces = config["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    # memory_limiter must come first to protect everything after it.
    assert traces["processors"] == ["memory_limiter", "batch"]
    assert "debug" in traces["exporters"]
    (jaeger,) = [name for name in traces["exporters"] if name.startswith("otlp")]
    assert config["exporters"][jaeger]["endpoint"] == "jaeger:4317"
    # Every component a pipeline names is configured.
    for kind in ("receivers", "processors", "exporters"):
        for name in traces[kind]:
            assert name in config[kind], f"{kind}: {name} used but not configured"


# Compose (no Docker engine here: structure only)


def test_compose_runs_the_monitoring_with_these_files() -> None:
    services = _yaml(COMPOSE)["services"]
    images = {
        name: services[name]["image"]
        for name in ("prometheus", "alertmanager", "otel-collector", "jaeger")
    }
    for name, image in images.items():
        _, _, tag = image.rpartition(":")
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: pin a version, not {image}"
    prometheus = services["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    alertmanager = services["alertmanager"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    collector = services["otel-collector"]
    assert "--config=/etc/otelcol/config.yaml" in collector["command"]
    assert "./deploy/otel-collector/config.yaml:/etc/otelcol/config.yaml:ro" in collector["volumes"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
