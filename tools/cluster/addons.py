"""The cluster add-ons `up` applies: CoreDNS, the local-path provisioner, metrics-server.

Each function returns Kubernetes objects as plain dicts (applied as one `kubectl apply` List).
Every image is a local `localhost/storefleet/<name>:dev` built by tools/cluster/install.sh, with
`imagePullPolicy: Never`: nothing is ever pulled. CoreDNS answers only for the cluster domain and
forwards nothing, so no DNS query leaves the machine.
"""

from __future__ import annotations

import json
from typing import Any

Obj = dict[str, Any]
SYSTEM = "kube-system"
STORAGE_NAMESPACE = "local-path-storage"


def image(name: str) -> str:
    return f"localhost/storefleet/{name}:dev"


def _meta(name: str, namespace: str | None = None, **labels: str) -> Obj:
    meta: Obj = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _binding(kind: str, name: str, role_kind: str, role: str, account: str, namespace: str,
             binding_namespace: str | None = None) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
        "metadata": _meta(name, binding_namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def _account(name: str, namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace)}


CRITICAL_TOLERATIONS = [{"key": "CriticalAddonsOnly", "operator": "Exists"}]
# No privilege a plain add-on needs; CoreDNS adds back the one to bind port 53.
RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
              "capabilities": {"drop": ["ALL"]}}


def coredns(dns_ip: str, domain: str = "cluster.local") -> list[Obj]:
    """CoreDNS as the cluster DNS Service `kube-dns` on `dns_ip`, serving only `domain`."""
    corefile = f"""\
.:53 {{
    errors
    health {{
        lameduck 2s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    reload
    loadbalance
}}
"""
    labels = {"k8s-app": "kube-dns"}
    return [
        _account("coredns", SYSTEM),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta("system:coredns"),
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        _binding("ClusterRoleBinding", "system:coredns", "ClusterRole", "system:coredns",
                 "coredns", SYSTEM),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("coredns", SYSTEM),
         "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": _meta("coredns", SYSTEM, **labels),
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": "coredns",
                     "priorityClassName": "system-cluster-critical",
                     "dnsPolicy": "Default",
                     "tolerations": CRITICAL_TOLERATIONS,
                     "containers": [{
                         "name": "coredns", "image": image("coredns"),
                         "imagePullPolicy": "Never",
                         "args": ["-conf", "/etc/coredns/Corefile"],
                         "ports": [
                             {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                             {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                         ],
                         "resources": {"requests": {"cpu": "20m", "memory": "32Mi"},
                                       "limits": {"memory": "170Mi"}},
                         "securityContext": {**RESTRICTED, "capabilities": {
                             "drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                            "periodSeconds": 2},
                         "livenessProbe": {"httpGet": {"path": "/health", "port": 8080},
                                           "initialDelaySeconds": 10, "periodSeconds": 10},
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns",
                                           "readOnly": True}],
                     }],
                     "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                 },
             },
         }},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": _meta("kube-dns", SYSTEM, **labels, **{
             "kubernetes.io/name": "CoreDNS"}),
         "spec": {"selector": labels, "clusterIP": dns_ip, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
         ]}},
    ]


def local_path(storage_dir: str) -> list[Obj]:
    """rancher/local-path-provisioner and the default StorageClass `local-path`.

    Volumes are folders under `storage_dir` on the node, made and removed by helper pods
    running the busybox image."""
    account = "local-path-provisioner-service-account"
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES",
                               "paths": [storage_dir]}]}
    helper_pod = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
spec:
  priorityClassName: system-node-critical
  tolerations:
    - key: node.kubernetes.io/disk-pressure
      operator: Exists
      effect: NoSchedule
  containers:
    - name: helper-pod
      image: {image("busybox")}
      imagePullPolicy: Never
"""
    labels = {"app": "local-path-provisioner"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(STORAGE_NAMESPACE)},
        _account(account, STORAGE_NAMESPACE),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": _meta("local-path-provisioner-role", STORAGE_NAMESPACE),
         "rules": [{"apiGroups": [""], "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta("local-path-provisioner-role"),
         "rules": [
             {"apiGroups": [""],
              "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods",
                            "pods/log"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["persistentvolumes"],
              "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
             {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
              "verbs": ["get", "list", "watch"]},
         ]},
        _binding("RoleBinding", "local-path-provisioner-bind", "Role",
                 "local-path-provisioner-role", account, STORAGE_NAMESPACE, STORAGE_NAMESPACE),
        _binding("ClusterRoleBinding", "local-path-provisioner-bind", "ClusterRole",
                 "local-path-provisioner-role", account, STORAGE_NAMESPACE),
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": _meta("local-path-config", STORAGE_NAMESPACE),
         "data": {
             "config.json": json.dumps(config),
             "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
             "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
             "helperPod.yaml": helper_pod,
         }},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": _meta("local-path-provisioner", STORAGE_NAMESPACE, **labels),
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": account,
                     "priorityClassName": "system-cluster-critical",
                     "tolerations": CRITICAL_TOLERATIONS,
                     "containers": [{
                         "name": "local-path-provisioner",
                         "image": image("local-path-provisioner"),
                         "imagePullPolicy": "Never",
                         "args": ["--debug", "start", "--config", "/etc/config/config.json"],
                         "env": [
                             {"name": "POD_NAMESPACE",
                              "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                             {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"},
                             {"name": "HELPER_IMAGE", "value": image("busybox")},
                         ],
                         "resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                       "limits": {"memory": "128Mi"}},
                         "securityContext": RESTRICTED,
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/config/"}],
                     }],
                     "volumes": [{"name": "config",
                                  "configMap": {"name": "local-path-config"}}],
                 },
             },
         }},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "local-path", "annotations": {
             "storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "rancher.io/local-path",
         "volumeBindingMode": "WaitForFirstConsumer",
         "reclaimPolicy": "Delete"},
    ]


def metrics_server() -> list[Obj]:
    """metrics-server behind the aggregated API `v1beta1.metrics.k8s.io`, so `kubectl top`
    and HorizontalPodAutoscalers get CPU and memory figures. It checks each kubelet's serving
    certificate against the cluster CA (the one in every pod's service account volume)."""
    labels = {"k8s-app": "metrics-server"}
    account = "metrics-server"
    return [
        _account(account, SYSTEM),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta("system:aggregated-metrics-reader", **{
             "rbac.authorization.k8s.io/aggregate-to-admin": "true",
             "rbac.authorization.k8s.io/aggregate-to-edit": "true",
             "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
         "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta("system:metrics-server"),
         "rules": [
             {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
             {"apiGroups": [""], "resources": ["pods", "nodes"],
              "verbs": ["get", "list", "watch"]},
         ]},
        _binding("RoleBinding", "metrics-server-auth-reader", "Role",
                 "extension-apiserver-authentication-reader", account, SYSTEM, SYSTEM),
        _binding("ClusterRoleBinding", "metrics-server:system:auth-delegator", "ClusterRole",
                 "system:auth-delegator", account, SYSTEM),
        _binding("ClusterRoleBinding", "system:metrics-server", "ClusterRole",
                 "system:metrics-server", account, SYSTEM),
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(account, SYSTEM, **labels),
         "spec": {"selector": labels, "ports": [
             {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": _meta(account, SYSTEM, **labels),
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels},
                 "spec": {
                     "serviceAccountName": account,
                     "priorityClassName": "system-cluster-critical",
                     "tolerations": CRITICAL_TOLERATIONS,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                     "containers": [{
                         "name": "metrics-server", "image": image("metrics-server"),
                         "imagePullPolicy": "Never",
                         "args": [
                             "--cert-dir=/tmp",
                             "--secure-port=10250",
                             "--kubelet-preferred-address-types=InternalIP",
                             "--kubelet-use-node-status-port",
                             "--kubelet-certificate-authority="
                             "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
                             "--metric-resolution=15s",
                             "--kubelet-request-timeout=5s",
                         ],
                         "ports": [{"name": "https", "containerPort": 10250,
                                    "protocol": "TCP"}],
                         "resources": {"requests": {"cpu": "20m", "memory": "64Mi"},
                                       "limits": {"memory": "256Mi"}},
                         "securityContext": RESTRICTED,
                         "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https",
                                                        "scheme": "HTTPS"},
                                            "periodSeconds": 2, "failureThreshold": 3},
                         "livenessProbe": {"httpGet": {"path": "/livez", "port": "https",
                                                       "scheme": "HTTPS"},
                                           "periodSeconds": 10, "failureThreshold": 3},
                         "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                     }],
                     "volumes": [{"name": "tmp", "emptyDir": {}}],
                 },
             },
         }},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": _meta("v1beta1.metrics.k8s.io", **labels),
         "spec": {"service": {"name": account, "namespace": SYSTEM},
                  "group": "metrics.k8s.io", "version": "v1beta1",
                  # metrics-server serves a self-signed certificate (as upstream deploys it).
                  "insecureSkipTLSVerify": True,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]


def all_addons(dns_ip: str, storage_dir: str) -> list[Obj]:
    return [*coredns(dns_ip), *local_path(storage_dir), *metrics_server()]
