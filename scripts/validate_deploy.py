#!/usr/bin/env python3
"""Cross-checks the deployment files against the code (issue #9). Run by scripts/validate.sh,
which first checks the syntax with the real tools (docker-compose config, openapi-spec-validator,
kubernetes-validate); this script checks what those cannot know:

- every environment name in docker-compose.yml and deploy/k8s/ is one src/config/raw.rs reads (or,
  for the mocks, one src/bin/mock-upstream.rs reads);
- every service built from our image runs one of the image's binaries (the Cargo [[bin]] targets
  the Dockerfile copies), with ports that agree across command, PORT and the published port;
- the gateway's addresses for Redis, the upstreams and the collector name services that exist,
  on the ports they listen on;
- the collector config has OTLP gRPC + HTTP receivers, memory_limiter first, batch, a debug
  exporter and one to the trace viewer; Prometheus scrapes the gateway's /metrics;
- the Kubernetes probes name /healthz and /readyz, which the OpenAPI document (dumped from the
  code) has; the grace period covers preStop + SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT; the pod runs
  non-root with a read-only root; selectors and ports agree;
- the Dockerfile exposes 8080, runs non-root, health-checks with `gateway --healthcheck` and
  starts in exec form.

Usage: validate_deploy.py <openapi.json> <binary names, comma-separated> <rendered k8s manifests>
"""
import json
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
failures = []
passed = 0


def check(ok, what):
    global passed
    if ok:
        passed += 1
    else:
        failures.append(what)


def config_env_names():
    """The upper-cased fields of `struct RawConfig` in src/config/raw.rs: every variable it reads."""
    text = (ROOT / "src/config/raw.rs").read_text()
    m = re.search(r"struct RawConfig \{(.*?)\n\}", text, re.S)
    if not m:
        sys.exit("validate: struct RawConfig not found in src/config/raw.rs")
    names = {f.upper() for f in re.findall(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?([a-z0-9_]+)\s*:", m.group(1), re.M)}
    if "PORT" not in names or "REDIS_ADDR" not in names:
        sys.exit(f"validate: RawConfig parse looks wrong: {sorted(names)}")
    return names


def mock_env_names():
    text = (ROOT / "src/bin/mock-upstream.rs").read_text()
    return set(re.findall(r'(?:env::var|env_num)\("([A-Z0-9_]+)"\)', text))


def parse_seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m)", str(d).strip())
    if not m:
        raise ValueError(f"unsupported duration {d!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60}[unit]


def command_of(svc):
    cmd = svc.get("command")
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    return cmd or []


def flag(cmd, name):
    if name in cmd and cmd.index(name) + 1 < len(cmd):
        return cmd[cmd.index(name) + 1]
    return None


def published_container_ports(svc):
    ports = set()
    for p in svc.get("ports", []):
        if isinstance(p, dict):
            ports.add(int(p["target"]))
        else:
            ports.add(int(str(p).split(":")[-1].split("/")[0]))
    return ports


def main():
    openapi_path, binaries = sys.argv[1], set(sys.argv[2].split(","))
    config_names = config_env_names()
    mock_names = mock_env_names()
    doc = json.loads(Path(openapi_path).read_text())
    doc_paths = set(doc["paths"])

    # --- Dockerfile ------------------------------------------------------------------------
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\S+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S))
    runtime = stages.get("runtime", "")
    mock = stages.get("mock-upstream", "")
    copied = set(re.findall(r"/out/([a-z-]+)", runtime))
    check(copied == {"gateway"}, f"Dockerfile: the production image holds only gateway, not {sorted(copied)}")
    mock_copied = set(re.findall(r"/out/([a-z-]+)", mock))
    check("mock-upstream" in mock_copied, "Dockerfile: a mock-upstream stage with the mock")
    check(copied | mock_copied == binaries, f"Dockerfile ships {sorted(copied | mock_copied)}, Cargo builds {sorted(binaries)}")
    check(list(stages)[-1] == "runtime", "Dockerfile: the production image is the last (default) stage")
    check("cargo chef cook" in dockerfile and "cargo chef prepare" in dockerfile,
          "Dockerfile: dependencies cached with cargo-chef")
    check("CARGO_PROFILE_RELEASE_STRIP=symbols" in dockerfile, "Dockerfile: stripped binaries")
    for label in ["source", "revision", "version"]:
        check(all(f"org.opencontainers.image.{label}=" in st for st in (runtime, mock)),
              f"Dockerfile: OCI label {label} on both images")
    cargo_version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    check(re.search(rf"^ARG VERSION={re.escape(cargo_version)}$", dockerfile, re.M),
          f"Dockerfile: ARG VERSION is Cargo.toml's {cargo_version}")
    check(re.search(r"^EXPOSE 8080$", dockerfile, re.M), "Dockerfile: EXPOSE 8080")
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    check(user and not user[-1].startswith(("0", "root")), "Dockerfile: last USER is non-root")
    check(
        re.search(r'HEALTHCHECK .*\n?.*CMD \["/usr/local/bin/gateway", "--healthcheck"\]', dockerfile),
        "Dockerfile: HEALTHCHECK runs `gateway --healthcheck` in exec form",
    )
    cmd = re.findall(r"^(?:CMD|ENTRYPOINT) (.*)$", dockerfile, re.M)
    check(cmd and all(c.startswith("[") for c in cmd), "Dockerfile: CMD/ENTRYPOINT in exec form")
    check(dockerfile.count("FROM ") >= 2, "Dockerfile: multi-stage")

    # --- docker-compose.yml ----------------------------------------------------------------
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ["gateway-api", "redis", "reservation-api", "payment-sim-api", "otel-collector", "prometheus",
                 "grafana", "jaeger"]:
        check(name in services, f"compose: service {name} exists")
    ours = {n: s for n, s in services.items() if "build" in s or str(s.get("image", "")).startswith("gateway-api")}
    for n, s in ours.items():
        cmd = command_of(s)
        exe = Path(cmd[0]).name if cmd else "gateway"
        target = s.get("build", {}).get("target")
        want = "runtime" if exe == "gateway" else "mock-upstream"
        check(target == want, f"compose: {n} builds the Dockerfile's {want} stage, not {target}")
        check(target in stages, f"compose: {n}'s build target {target} is a Dockerfile stage")
        check(exe in binaries, f"compose: {n} runs {exe!r}, not one of the image's binaries {sorted(binaries)}")
        env = s.get("environment", {})
        check(isinstance(env, dict), f"compose: {n} environment is a mapping")
        known = config_names if exe == "gateway" else mock_names
        unknown = sorted(set(env) - known)
        check(not unknown, f"compose: {n} sets unknown variables {unknown}")
        port = int(env.get("PORT", 8080))
        check(port in published_container_ports(s), f"compose: {n} publishes its PORT {port}")
        if exe == "mock-upstream":
            check(flag(cmd, "--port") == str(port), f"compose: {n} --port matches PORT {port}")
            check(flag(cmd, "--role") in ("reservation", "payment"), f"compose: {n} has a --role")

    gw = services["gateway-api"]
    env = gw["environment"]
    check(env.get("PORT") == "8080" and 8080 in published_container_ports(gw), "compose: gateway on 8080")
    deps = gw.get("depends_on", {})
    check(isinstance(deps, dict) and deps.get("redis", {}).get("condition") == "service_healthy",
          "compose: gateway depends on a healthy redis")
    check("healthcheck" in services["redis"], "compose: redis has a healthcheck")
    check(6379 in published_container_ports(services["redis"]), "compose: redis on 6379")
    check(env.get("JWT_SKIP_VERIFY") == "true" or {"JWT_ISSUER", "JWT_AUDIENCE", "JWT_JWKS_URL"} <= set(env),
          "compose: a working JWT setup")

    def listens(service, port):
        s = services.get(service)
        if s is None:
            return False
        if service in ours:
            return int(s.get("environment", {}).get("PORT", 8080)) == port
        return port in published_container_ports(s) or service == "jaeger"

    for var, want in [("UPSTREAM_RESERVATION_BASE", "reservation"), ("UPSTREAM_PAYMENT_BASE", "payment")]:
        for base in env[var].split(","):
            u = urlparse(base.strip())
            check(listens(u.hostname, u.port), f"compose: {var}={base} names a service listening there")
            target = services.get(u.hostname, {})
            check(flag(command_of(target), "--role") == want, f"compose: {var} points at the {want} mock")
    host, _, port = env["REDIS_ADDR"].rpartition(":")
    check(host == "redis" and port == "6379", "compose: REDIS_ADDR is redis:6379")
    otlp = urlparse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    check(otlp.hostname == "otel-collector" and otlp.port == 4317, "compose: gateway exports to otel-collector:4317")
    col = services["otel-collector"]
    check({4317, 4318} <= published_container_ports(col), "compose: collector on 4317 and 4318")
    mounted = [v.split(":")[0] for v in col.get("volumes", [])]
    check("./otel-collector.yaml" in mounted, "compose: collector mounts otel-collector.yaml")
    check(any(f"--config={v.split(':')[1]}" in command_of(col) for v in col.get("volumes", [])),
          "compose: collector runs the mounted config")
    check(re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", services["jaeger"]["image"]),
          "compose: Jaeger v2, pinned")
    check(re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", services["prometheus"]["image"]),
          "compose: Prometheus v3, pinned")
    graf = services["grafana"]
    for v in graf.get("volumes", []):
        check((ROOT / v.split(":")[0]).exists(), f"compose: grafana mounts {v.split(':')[0]}, which exists")
    prom = services["prometheus"]
    check(any(v.startswith("./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml") for v in prom.get("volumes", [])),
          "compose: prometheus mounts the alert rules where prometheus.yml reads them")
    check(any(v.startswith("./deploy/prometheus/prometheus.yml:") for v in prom.get("volumes", [])),
          "compose: prometheus mounts deploy/prometheus/prometheus.yml")
    grace = parse_seconds(gw.get("stop_grace_period", "10s"))
    check(grace >= parse_seconds(env["SHUTDOWN_DELAY"]) + parse_seconds(env["SHUTDOWN_TIMEOUT"]),
          "compose: stop_grace_period covers SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT")

    # --- otel-collector.yaml ---------------------------------------------------------------
    otel = yaml.safe_load((ROOT / "otel-collector.yaml").read_text())
    protocols = otel["receivers"]["otlp"]["protocols"]
    check(protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318"),
          "collector: OTLP gRPC on 4317 and HTTP on 4318")
    traces = otel["service"]["pipelines"]["traces"]
    check(traces["processors"][0] == "memory_limiter" and "batch" in traces["processors"],
          "collector: memory_limiter first, then batch")
    for kind in ["receivers", "processors", "exporters"]:
        for item in traces[kind]:
            check(item in otel[kind], f"collector: pipeline {kind[:-1]} {item} is defined")
    check("debug" in traces["exporters"], "collector: debug exporter")
    viewers = [e for e in traces["exporters"] if e.startswith("otlp")]
    check(viewers, "collector: an OTLP exporter to the trace viewer")
    for e in viewers:
        host = otel["exporters"][e]["endpoint"].split(":")[0]
        check(host in services, f"collector: exporter {e} points at compose service {host}")

    # --- deploy/prometheus/prometheus.yml -------------------------------------------------------------
    promcfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    jobs = promcfg["scrape_configs"]
    check(any(j.get("metrics_path", "/metrics") == "/metrics"
              and "gateway-api:8080" in sum((c["targets"] for c in j.get("static_configs", [])), [])
              for j in jobs), "prometheus: scrapes gateway-api:8080/metrics")
    check("/metrics" in doc_paths, "openapi: /metrics documented")

    # --- deploy/k8s ------------------------------------------------------------------------
    # What `kubectl apply -k deploy/k8s` applies: the rendered manifests (argument 3, from
    # `kubectl kustomize deploy/k8s`), so the generated ConfigMap is checked as it is applied.
    k8s = {}
    for d in yaml.safe_load_all(Path(sys.argv[3]).read_text()):
        if d:
            k8s.setdefault(d["kind"], []).append(d)
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
                 "NetworkPolicy"]:
        check(kind in k8s, f"k8s: a {kind}")
    kust = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())
    for r in kust.get("resources", []):
        check((ROOT / "deploy/k8s" / r).exists(), f"k8s: kustomization resource {r} exists")
    gens = [g for g in kust.get("configMapGenerator", []) if g["name"] == "gateway-api-config"]
    check(bool(gens), "k8s: the settings come from a configMapGenerator (a change rolls the pods)")
    check(k8s["ConfigMap"][0]["metadata"]["name"].startswith("gateway-api-config-"),
          "k8s: the ConfigMap's name carries the content hash")
    dep = k8s["Deployment"][0]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    labels = pod["metadata"]["labels"]
    check(c["command"][0] == "/usr/local/bin/gateway", "k8s: the container runs the gateway")
    cm = k8s["ConfigMap"][0]
    check(any(e.get("configMapRef", {}).get("name") == cm["metadata"]["name"] for e in c.get("envFrom", [])),
          "k8s: the Deployment reads the ConfigMap")
    unknown = sorted(set(cm["data"]) - config_names)
    check(not unknown, f"k8s: ConfigMap sets unknown variables {unknown}")
    env_names = {e["name"] for e in c.get("env", [])}
    check(not (env_names - config_names), f"k8s: Deployment env sets unknown variables {sorted(env_names - config_names)}")
    redis_pw = [e for e in c.get("env", []) if e["name"] == "REDIS_PASSWORD"]
    check(redis_pw and "secretKeyRef" in redis_pw[0].get("valueFrom", {}), "k8s: REDIS_PASSWORD from a Secret")
    check("REDIS_PASSWORD" not in cm["data"], "k8s: no password in the ConfigMap")
    port = int(cm["data"].get("PORT", 8080))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("http") == port, f"k8s: containerPort http = PORT {port}")
    probe_paths = {}
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"]:
        if probe in c:
            get = c[probe]["httpGet"]
            probe_paths[probe] = get["path"]
            check(get["path"] in doc_paths, f"k8s: {probe} path {get['path']} is a documented route")
            check(get["port"] in ("http", port), f"k8s: {probe} on the http port")
    check(probe_paths.get("livenessProbe") == "/healthz", "k8s: liveness on /healthz")
    check(probe_paths.get("readinessProbe") == "/readyz", "k8s: readiness on /readyz")
    check("requests" in c.get("resources", {}) and "limits" in c.get("resources", {}), "k8s: resources set")
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    need = pre_stop + parse_seconds(cm["data"]["SHUTDOWN_DELAY"]) + parse_seconds(cm["data"]["SHUTDOWN_TIMEOUT"])
    check(pre_stop > 0, "k8s: a preStop sleep")
    check(spec.get("terminationGracePeriodSeconds", 30) >= need,
          f"k8s: terminationGracePeriodSeconds covers preStop + SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT = {need}")
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "k8s: runs as non-root")
    check(csc.get("readOnlyRootFilesystem") is True, "k8s: read-only root filesystem")
    check(csc.get("allowPrivilegeEscalation") is False, "k8s: no privilege escalation")
    ann = pod["metadata"].get("annotations", {})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port)
          and ann.get("prometheus.io/path") == "/metrics", "k8s: Prometheus scrape annotations")
    selector = dep["spec"]["selector"]["matchLabels"]
    check(selector.items() <= labels.items(), "k8s: Deployment selector matches its pods")
    svc = k8s["Service"][0]
    check(svc["spec"]["selector"].items() <= labels.items(), "k8s: Service selects the pods")
    check(all(p.get("targetPort") in ("http", port) for p in svc["spec"]["ports"]), "k8s: Service targets http")
    pdb = k8s["PodDisruptionBudget"][0]
    check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "k8s: PDB selects the pods")
    hpa = k8s["HorizontalPodAutoscaler"][0]
    check(hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "k8s: HPA targets the Deployment")
    check(hpa["spec"]["minReplicas"] >= 2, "k8s: HPA keeps at least 2 replicas")
    if "maxUnavailable" in pdb["spec"]:
        check(hpa["spec"]["minReplicas"] > int(pdb["spec"]["maxUnavailable"]), "k8s: PDB leaves a replica up")

    if failures:
        for f in failures:
            print(f"validate: FAILED {f}", file=sys.stderr)
    print(f"validate: {passed} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
