#!/usr/bin/env python3
"""Validate the Kubernetes example (deploy/kubernetes/) without kubectl or a cluster.

usage: scripts/check_kubernetes.py [--pgrail BIN] [DIR]

Structure: every document parses, has apiVersion, kind and metadata.name; the Deployment's
selector matches its pod labels, its mounts name its volumes, the ConfigMaps it projects exist and
hold the keys it projects (and every migration is projected), the Service selects the pods and
targets a named container port.
Against pgrail itself: the probes are /readyz and /healthz on the port pgrail.yaml's `http:`
listens on (on every interface), the Service's port is `listen.port`, the grace period outlasts
shutdown_timeout plus the preStop delay, the pod runs as non-root on a read-only root. Then the
files are laid out as the pod sees them and `pgrail check --policy`, `pgrail migrate lint` and
`pgrail serve` (on free local ports, answering /healthz) must accept them.
Prints one line per failed check and exits 1 on any; 0 and a summary otherwise.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

failures = []


def fail(message):
    failures.append(message)
    print(f"check_kubernetes: FAIL: {message}", file=sys.stderr)


def load_documents(directory):
    documents = []
    names = sorted(n for n in os.listdir(directory) if n.endswith((".yaml", ".yml")))
    if not names:
        fail(f"no .yaml files in {directory}")
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as f:
                loaded = list(yaml.safe_load_all(f))
        except yaml.YAMLError as e:
            fail(f"{path}: does not parse: {e}")
            continue
        for index, document in enumerate(loaded):
            where = f"{path} document {index + 1}"
            if document is None:
                continue
            if not isinstance(document, dict):
                fail(f"{where}: not a mapping")
                continue
            for key in ("apiVersion", "kind"):
                if not isinstance(document.get(key), str) or not document[key]:
                    fail(f"{where}: no {key}")
            name_of = (document.get("metadata") or {}).get("name")
            if not isinstance(name_of, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name_of):
                fail(f"{where}: metadata.name missing or not a DNS subdomain name")
            documents.append((where, document))
    return documents


def by_kind(documents, kind):
    return [(where, d) for where, d in documents if d.get("kind") == kind]


def duration_seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|min|h)?", str(text).strip())
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2) or "ms"
    return value * {"ms": 0.001, "s": 1, "min": 60, "h": 3600}[unit]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def check_deployment(where, deployment, config_maps, services):
    """Returns the files the pod sees under the config mount ({path: text}), its mount path and
    the pgrail.yaml path from the container's arguments."""
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        fail(f"{where}: spec.selector.matchLabels {selector} do not match the pod labels {pod_labels}")
    pod = template.get("spec") or {}
    containers = pod.get("containers") or []
    if len(containers) != 1:
        fail(f"{where}: expected one container, found {len(containers)}")
        return None
    container = containers[0]
    for key in ("name", "image"):
        if not container.get(key):
            fail(f"{where}: the container has no {key}")

    pod_security = pod.get("securityContext") or {}
    container_security = container.get("securityContext") or {}
    if not (pod_security.get("runAsNonRoot") or container_security.get("runAsNonRoot")):
        fail(f"{where}: runAsNonRoot is not set")
    if not isinstance(pod_security.get("runAsUser", container_security.get("runAsUser")), int):
        fail(f"{where}: runAsUser must be numeric (the image's USER is a name: runAsNonRoot cannot verify it)")
    if container_security.get("readOnlyRootFilesystem") is not True:
        fail(f"{where}: readOnlyRootFilesystem is not true")
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        if not all(k in (resources.get(part) or {}) for k in ("cpu", "memory")):
            fail(f"{where}: resources.{part} needs cpu and memory")

    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}

    def resolve_port(port):
        return ports.get(port) if isinstance(port, str) else port

    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    config_mount = None
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volumes:
            fail(f"{where}: volumeMount {mount.get('name')} names no volume")
        elif "projected" in volumes[mount["name"]] or "configMap" in volumes[mount["name"]]:
            config_mount = mount

    args = container.get("args") or []
    config_path = None
    for flag in ("--config", "-c"):
        if flag in args and args.index(flag) + 1 < len(args):
            config_path = args[args.index(flag) + 1]
    if args[:1] != ["serve"] or not config_path:
        fail(f"{where}: the container's args must be `serve --config FILE`, got {args}")
        return None
    if config_mount is None:
        fail(f"{where}: no ConfigMap volume is mounted")
        return None
    mount_path = config_mount["mountPath"].rstrip("/")
    if not config_path.startswith(mount_path + "/"):
        fail(f"{where}: --config {config_path} is not under the ConfigMap mount {mount_path}")
        return None

    # The files of the mount, as the kubelet projects them.
    volume = volumes[config_mount["name"]]
    sources = [s["configMap"] for s in (volume.get("projected") or {}).get("sources", []) if "configMap" in s]
    if "configMap" in volume:
        sources.append(volume["configMap"])
    files = {}
    for source in sources:
        name = source.get("name")
        if name not in config_maps:
            fail(f"{where}: projects ConfigMap {name}, which is not defined here")
            continue
        data = config_maps[name].get("data") or {}
        items = source.get("items")
        if items is None:
            items = [{"key": k, "path": k} for k in data]
        projected = set()
        for item in items:
            if item.get("key") not in data:
                fail(f"{where}: ConfigMap {name} has no key {item.get('key')}")
                continue
            projected.add(item["key"])
            files[item["path"]] = data[item["key"]]
        for key in sorted(set(data) - projected):
            fail(f"{where}: key {key} of ConfigMap {name} is not projected (add it to the volume's items)")

    relative_config = config_path[len(mount_path) + 1:]
    if relative_config not in files:
        fail(f"{where}: {config_path} is not among the projected files {sorted(files)}")
        return None
    try:
        config = yaml.safe_load(files[relative_config]) or {}
    except yaml.YAMLError as e:
        fail(f"{where}: {config_path} does not parse: {e}")
        return None

    http = config.get("http") or {}
    http_port = http.get("port", 0)
    if not http_port:
        fail(f"{where}: pgrail.yaml has no http.port: the probes have nothing to ask")
    if http.get("host") not in ("0.0.0.0", "::"):
        fail(f"{where}: pgrail.yaml http.host is {http.get('host', '127.0.0.1 (default)')}: the kubelet probes the pod's IP")
    for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        probe = (container.get(probe_name) or {}).get("httpGet")
        if not probe:
            fail(f"{where}: no {probe_name}.httpGet")
            continue
        if probe.get("path") != path:
            fail(f"{where}: {probe_name} asks {probe.get('path')}, not {path}")
        if resolve_port(probe.get("port")) != http_port:
            fail(f"{where}: {probe_name} port {probe.get('port')} is not pgrail.yaml's http.port {http_port}")
    listen_port = (config.get("listen") or {}).get("port", 6432)
    if listen_port not in ports.values():
        fail(f"{where}: no container port is pgrail.yaml's listen.port {listen_port}")
    if (config.get("listen") or {}).get("host", "127.0.0.1") not in ("0.0.0.0", "::"):
        fail(f"{where}: pgrail.yaml listen.host must be 0.0.0.0 in a pod")

    shutdown = duration_seconds(config.get("shutdown_timeout", "30s"))
    pre_stop = 0
    command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    if command[:1] == ["sleep"] and len(command) == 2:
        pre_stop = float(command[1])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if shutdown is None or grace <= shutdown + pre_stop:
        fail(f"{where}: terminationGracePeriodSeconds {grace} must exceed shutdown_timeout "
             f"{config.get('shutdown_timeout', '30s')} plus the preStop delay {pre_stop:g} s")

    for service_where, service in services:
        service_spec = service.get("spec") or {}
        service_selector = service_spec.get("selector") or {}
        if not service_selector or any(pod_labels.get(k) != v for k, v in service_selector.items()):
            fail(f"{service_where}: selector {service_selector} does not select the pods {pod_labels}")
        targets = [resolve_port(p.get("targetPort", p.get("port"))) for p in service_spec.get("ports") or []]
        if None in targets:
            fail(f"{service_where}: a targetPort names no container port")
        if listen_port not in targets:
            fail(f"{service_where}: no port targets pgrail's listen.port {listen_port}")
    return files, mount_path, relative_config


def check_with_pgrail(pgrail, files, relative_config):
    with tempfile.TemporaryDirectory(prefix="pgrail-k8s-") as root:
        for path, text in files.items():
            target = os.path.join(root, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
        config_file = os.path.join(root, relative_config)
        with open(config_file, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}

        policy = config.get("policy")
        if policy:
            result = subprocess.run([pgrail, "check", "--policy", os.path.join(root, policy)],
                                    capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                fail(f"pgrail check --policy {policy} (from the ConfigMap): {result.stderr.strip() or result.stdout.strip()}")
        migrations = (config.get("migrations") or {}).get("dir")
        if migrations:
            result = subprocess.run([pgrail, "migrate", "--dir", os.path.join(root, migrations), "lint"],
                                    capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                fail(f"pgrail migrate lint of {migrations} (from the ConfigMap): {result.stdout.strip()} {result.stderr.strip()}")

        # pgrail serve with the pod's configuration, only moved to free local ports: it must load
        # it (config, policy, migrations) and answer the liveness probe.
        config.setdefault("listen", {}).update({"host": "127.0.0.1", "port": free_port()})
        http_port = free_port()
        config.setdefault("http", {}).update({"host": "127.0.0.1", "port": http_port})
        local_config = os.path.join(os.path.dirname(config_file), "pgrail-local.yaml")
        with open(local_config, "w", encoding="utf-8") as f:
            yaml.safe_dump(config, f)
        log_path = os.path.join(root, "serve.log")
        with open(log_path, "w") as log:
            server = subprocess.Popen([pgrail, "serve", "--config", local_config], stdout=subprocess.DEVNULL,
                                      stderr=log, start_new_session=True)
        healthz = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and server.poll() is None:
            healthz = http_status(http_port, "/healthz")
            if healthz is not None:
                break
            time.sleep(0.2)
        readyz = http_status(http_port, "/readyz") if healthz is not None else None
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
                fail("pgrail serve did not stop within 15 s of SIGINT")
        with open(log_path) as log:
            log_text = log.read().strip()
        if healthz != 200:
            fail(f"pgrail serve with the ConfigMap's pgrail.yaml: /healthz answered {healthz}, "
                 f"exit status {server.returncode}; its log:\n{log_text}")
        elif readyz not in (200, 503):
            fail(f"pgrail serve: /readyz answered {readyz}, expected 200 or 503 (no server here)")
        else:
            print(f"check_kubernetes: pgrail serve accepted the ConfigMap's pgrail.yaml: /healthz {healthz}, "
                  f"/readyz {readyz} (no PostgreSQL named `postgres` here)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="deploy/kubernetes")
    parser.add_argument("--pgrail", help="a pgrail binary: also validate the configuration, policy and migrations with it")
    options = parser.parse_args()

    documents = load_documents(options.directory)
    config_maps = {d["metadata"]["name"]: d for _, d in by_kind(documents, "ConfigMap") if d.get("metadata")}
    services = by_kind(documents, "Service")
    deployments = by_kind(documents, "Deployment")
    if len(deployments) != 1:
        fail(f"expected one Deployment, found {len(deployments)}")
    if not services:
        fail("no Service")
    layout = None
    for where, deployment in deployments:
        layout = check_deployment(where, deployment, config_maps, services)
    if layout and options.pgrail:
        files, _, relative_config = layout
        check_with_pgrail(options.pgrail, files, relative_config)

    if failures:
        print(f"check_kubernetes: {len(failures)} failed checks in {options.directory}", file=sys.stderr)
        return 1
    kinds = ", ".join(sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in documents))
    print(f"check_kubernetes: {len(documents)} documents ok ({kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
