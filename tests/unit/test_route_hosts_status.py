"""Host assignment, host/spec validation and the status entry."""
from __future__ import annotations

from netshift.route import admission, hosts, status, validation
from netshift.settings import OperatorSettings
from tests.support.routes import route


def write(**kw):
    args = {"spec_host": None, "subdomain": None, "wildcard_policy": "None", "name": "web", "namespace": "shop",
                "domain": "apps.example.com", "previous_host": None}
    args.update(kw)
    return hosts.host_to_write(**args)


def test_generated_host_replaces_dots_in_name():
    assert hosts.generated_host("web.v1", "shop", "apps.example.com") == "web-v1-shop.apps.example.com"
    w = write(name="web.v1")
    assert w == hosts.HostWrite("web-v1-shop.apps.example.com", generated=True)


def test_no_write_for_user_host_subdomain_or_wildcard():
    assert write(spec_host="mine.example.com") is None
    assert write(subdomain="shop") is None
    assert write(wildcard_policy="Subdomain") is None


def test_cleared_host_is_kept():
    assert write(previous_host="old.example.com") == hosts.HostWrite("old.example.com", False)


def test_long_generated_label_is_invalid():
    host = write(name="n" * 40, namespace="s" * 30).host
    errs = validation.host_errors(host)
    assert errs and "must be no more than 63 characters" in errs[0]
    assert validation.host_errors(host, allow_non_dns_compliant=True) == []


def test_domain_of_host():
    assert hosts.domain_of("www.example.com") == "example.com"
    assert hosts.domain_of("localhost") == ""


def test_host_validation_messages():
    assert validation.host_errors("www.example.com") == []
    assert validation.host_errors("www.example.com.") == []  # a trailing dot is fine
    [err] = validation.host_errors("Www.example.com")
    assert err.startswith('spec.host: Invalid value: "Www.example.com": host must conform to DNS 1123 '
                          "naming conventions: [")
    assert "lowercase RFC 1123 subdomain" in err
    assert "at least two segments" in validation.host_errors("single")[0]


def test_spec_validation():
    assert validation.spec_errors(route(host="h.example.com")) == []
    errs = validation.spec_errors(route(host="h.example.com", path="/a b",
                                        to={"kind": "Deployment", "name": "x"}))
    assert 'spec.path: Invalid value: "/a b": path must not contain spaces or \'#\'' in errs
    assert 'spec.to.kind: Invalid value: "Deployment": must reference a Service' in errs
    errs = validation.spec_errors(route(host="h.example.com",
                                        tls={"termination": "edge", "destinationCACertificate": "x"}))
    assert errs == ['spec.tls.destinationCACertificate: Invalid value: "redacted destination ca '
                    'certificate data": edge termination does not support destination certificates']
    assert validation.spec_errors(route(host="h.example.com", to={"kind": "", "name": "x"})) == []


def test_policy_from_config(monkeypatch):
    for name, value in {"NETSHIFT_ROUTER_DOMAIN": "apps.x.io", "NETSHIFT_ALLOW_WILDCARD_ROUTES": "true",
                        "NETSHIFT_ROUTER_DENIED_DOMAINS": "bad.io, worse.io."}.items():
        monkeypatch.setenv(name, value)
    cfg = OperatorSettings()
    policy = admission.policy_from_config(cfg)
    assert policy.domain == "apps.x.io" and policy.allow_wildcard_routes
    assert policy.denied_domains == {"bad.io", "worse.io"}
    assert not admission.policy_from_config(OperatorSettings(allow_wildcard_routes=False)).allow_wildcard_routes


# --- status ---

ADMIT = admission.Decision(True)
CLAIMED = admission.reject("HostAlreadyClaimed", "taken")


def entry(decision, previous=None, now="2024-01-02T00:00:00Z"):
    return status.desired_entry(router_name="default", host="h.example.com", wildcard_policy="None",
                                canonical_hostname=None, decision=decision, previous=previous, now=now)


def test_entry_shape():
    assert entry(CLAIMED) == {
        "host": "h.example.com", "routerName": "default", "wildcardPolicy": "None",
        "conditions": [{"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed",
                        "message": "taken", "lastTransitionTime": "2024-01-02T00:00:00Z"}]}


def test_transition_time_kept_while_status_unchanged():
    first = entry(CLAIMED, now="2024-01-01T00:00:00Z")
    other_reason = entry(admission.reject("InvalidHost", "bad"), previous=first)
    assert other_reason["conditions"][0]["lastTransitionTime"] == "2024-01-01T00:00:00Z"
    flipped = entry(ADMIT, previous=first)
    assert flipped["conditions"][0]["lastTransitionTime"] == "2024-01-02T00:00:00Z"


def test_merge_keeps_others_and_decides_patch():
    other = {"routerName": "other", "host": "h.example.com"}
    ours = entry(ADMIT)
    current = [other, {"routerName": "default", "host": "stale"}, {"routerName": "default"}]
    merged = status.merged_ingress(current, "default", ours)
    assert merged == [other, ours]
    assert status.needs_patch(current, merged)
    assert not status.needs_patch(merged, status.merged_ingress(merged, "default", entry(ADMIT, ours)))
    assert status.merged_ingress([other, ours], "default", None) == [other]


def test_status_patch_carries_resource_version():
    assert status.status_patch([], "42") == {"status": {"ingress": []}, "metadata": {"resourceVersion": "42"}}
