"""Which connections a set of Kubernetes NetworkPolicies allows, for the deploy tests.

The NetworkPolicy semantics the manifests rely on: a pod selected by no policy of a direction
allows everything that way; once selected, a connection needs a rule of some selecting policy
whose peers and ports both match (no `from`/`to`: any peer; no `ports`: any port). A peer entry
with only `podSelector` means pods of the policy's own namespace; `namespaceSelector` alone, any
pod of the matching namespaces; both, matching pods of matching namespaces. Named ports resolve
against the selected pod's container ports. Label selectors: matchLabels and the four
matchExpressions operators. ipBlock is not used by the manifests and is an error here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A pod: its namespace's name, its labels and its container ports (name -> number)."""

    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {NAMESPACE_LABEL: self.namespace}


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against labels; {} selects all."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(entry: dict, policy_namespace: str, peer: Pod) -> bool:
    assert "ipBlock" not in entry, "ipBlock peers are not emulated"
    if "namespaceSelector" in entry:
        if not selects(entry["namespaceSelector"], peer.namespace_labels):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return selects(entry.get("podSelector", {}), peer.labels)


def _port_matches(entry: dict, port: int, protocol: str, target: Pod) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    if "port" not in entry:
        return True
    wanted = entry["port"]
    if isinstance(wanted, str):
        wanted = target.ports.get(wanted)
    end = entry.get("endPort", wanted)
    return wanted is not None and wanted <= port <= end


def allowed(
    policies: list[dict], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` may open a connection to `destination` on `port`: egress of the
    source's namespace's policies and ingress of the destination's must both allow it.
    Policies are in the namespace of the pods they select (`metadata.namespace`, or that of
    `destination`/`source` when unset: kustomize applies them to one namespace)."""
    return _direction(policies, "Egress", source, destination, port, protocol) and _direction(
        policies, "Ingress", destination, source, port, protocol
    )


def _direction(
    policies: list[dict], kind: str, subject: Pod, peer: Pod, port: int, protocol: str
) -> bool:
    rules_key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace", subject.namespace) == subject.namespace
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], subject.labels)
    ]
    if not selecting:
        return True
    # Ports of a rule are the destination's: for ingress the subject's, for egress the peer's.
    target = subject if kind == "Ingress" else peer
    for policy in selecting:
        for rule in policy["spec"].get(rules_key, []):
            peers = rule.get(peers_key)
            if peers and not any(_peer_matches(e, subject.namespace, peer) for e in peers):
                continue
            ports = rule.get("ports")
            if ports and not any(_port_matches(e, port, protocol, target) for e in ports):
                continue
            return True
    return False
