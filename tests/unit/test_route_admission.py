"""The pure admission function: ownership, paths, passthrough, wildcards, promotion."""
from __future__ import annotations

import dataclasses

import pytest

from netshift.route import admission
from netshift.route.admission import AdmissionIndex, Candidate, admit
from tests.support.routes import POLICY, cand, route

T1, T2, T3, T4 = (f"2024-01-01T00:00:0{i}Z" for i in range(1, 5))


def decide(*cands: Candidate, policy=POLICY) -> dict[str, admission.Decision]:
    by_uid = admit(cands, policy)
    return {f"{c.namespace}/{c.name}": by_uid[c.uid] for c in cands}


def admitted(decisions) -> set[str]:
    return {k for k, d in decisions.items() if d.admitted}


def test_single_route_is_admitted():
    d = decide(cand("a", host="www.example.com"))
    assert d["ns/a"] == admission.Decision(True)


def test_older_namespace_owns_host_and_others_are_claimed():
    old = cand("a", "ns1", host="www.example.com", created=T1)
    new = cand("b", "ns2", host="www.example.com", created=T2, path="/other")
    d = decide(new, old)  # input order does not matter
    assert admitted(d) == {"ns1/a"}
    assert d["ns2/b"].reason == "HostAlreadyClaimed"
    assert d["ns2/b"].message == "a route in another namespace holds www.example.com and is older than b"


def test_tie_on_creation_time_is_broken_by_uid():
    a = cand("a", "ns1", host="h.example.com", created=T1, uid="bbbb")
    b = cand("b", "ns2", host="h.example.com", created=T1, uid="aaaa")
    assert admitted(decide(a, b)) == {"ns2/b"}


def test_creation_time_wins_over_uid():
    a = cand("a", "ns1", host="h.example.com", created=T1, uid="zzzz")
    b = cand("b", "ns2", host="h.example.com", created=T2, uid="aaaa")
    assert admitted(decide(a, b)) == {"ns1/a"}


def test_different_paths_coexist_in_owning_namespace():
    d = decide(cand("a", host="h.example.com", created=T1),
               cand("b", host="h.example.com", path="/api", created=T2),
               cand("c", host="h.example.com", path="/api/v2", created=T3))
    assert admitted(d) == {"ns/a", "ns/b", "ns/c"}


def test_equal_paths_older_wins():
    d = decide(cand("a", host="h.example.com", path="/x", created=T2),
               cand("b", host="h.example.com", path="/x", created=T1))
    assert admitted(d) == {"ns/b"}
    assert d["ns/a"].message == "route b already exposes h.example.com and is older"


def test_other_namespace_cannot_add_a_path_either():
    d = decide(cand("a", "ns1", host="h.example.com", created=T1),
               cand("b", "ns2", host="h.example.com", path="/only-mine", created=T2))
    assert admitted(d) == {"ns1/a"}


def test_disabled_ownership_check_lets_paths_from_other_namespaces_coexist():
    policy = dataclasses.replace(POLICY, disable_namespace_ownership_check=True)
    d = decide(cand("a", "ns1", host="h.example.com", created=T1, policy=policy),
               cand("b", "ns2", host="h.example.com", path="/b", created=T2, policy=policy),
               cand("c", "ns3", host="h.example.com", path="/b", created=T3, policy=policy),
               policy=policy)
    assert admitted(d) == {"ns1/a", "ns2/b"}
    assert d["ns3/c"].reason == "HostAlreadyClaimed"


@pytest.mark.parametrize("older,newer", [("passthrough", "edge"), ("edge", "passthrough"),
                                         ("passthrough", "reencrypt")])
def test_passthrough_conflicts_with_any_other_tls_route(older, newer):
    tls_old = {"termination": older}
    tls_new = {"termination": newer}
    d = decide(cand("a", host="h.example.com", tls=tls_old, created=T1,
                    path=None if older == "passthrough" else "/a"),
               cand("b", host="h.example.com", tls=tls_new, created=T2,
                    path=None if newer == "passthrough" else "/b"))
    assert admitted(d) == {"ns/a"}
    assert d["ns/b"].message == "route a already exposes h.example.com and is older"


def test_passthrough_coexists_with_plain_http_route_on_other_path():
    d = decide(cand("a", host="h.example.com", tls={"termination": "passthrough"}, created=T1),
               cand("b", host="h.example.com", path="/plain", created=T2))
    assert admitted(d) == {"ns/a", "ns/b"}


def test_wildcard_claims_domain_against_other_namespaces():
    d = decide(cand("w", "ns1", host="www.example.com", wildcard="Subdomain", created=T1),
               cand("x", "ns2", host="api.example.com", created=T2),
               cand("y", "ns1", host="api2.example.com", created=T3),
               cand("z", "ns2", host="deep.api.example.com", created=T4))
    assert admitted(d) == {"ns1/w", "ns1/y", "ns2/z"}  # z is under api.example.com, not example.com
    assert d["ns2/x"].message == "a route in another namespace holds host api.example.com"


def test_older_route_of_another_namespace_blocks_a_wildcard():
    d = decide(cand("x", "ns2", host="api.example.com", created=T1),
               cand("w", "ns1", host="www.example.com", wildcard="Subdomain", created=T2))
    assert admitted(d) == {"ns2/x"}
    assert d["ns1/w"].reason == "HostAlreadyClaimed"


def test_two_wildcards_same_namespace_same_path_older_wins():
    d = decide(cand("w1", host="a.example.com", wildcard="Subdomain", created=T1),
               cand("w2", host="b.example.com", wildcard="Subdomain", created=T2),
               cand("w3", host="c.example.com", wildcard="Subdomain", path="/p", created=T3))
    assert admitted(d) == {"ns/w1", "ns/w3"}
    assert d["ns/w2"].message == "wildcard route ns/w1 has host *.example.com, blocking b.example.com"


def test_wildcard_routes_rejected_when_not_allowed():
    policy = dataclasses.replace(POLICY, allow_wildcard_routes=False)
    d = decide(cand("w", host="www.example.com", wildcard="Subdomain", policy=policy), policy=policy)
    assert d["ns/w"] == admission.reject("RouteNotAdmitted", "wildcard routes are not allowed")


def test_rejected_route_claims_nothing():
    bad = cand("a", "ns1", host="h.example.com", created=T1,
               tls={"termination": "edge", "destinationCACertificate": "x"})
    good = cand("b", "ns2", host="h.example.com", created=T2)
    d = decide(bad, good)
    assert d["ns1/a"].reason == "ExtendedValidationFailed"
    assert admitted(d) == {"ns2/b"}


def test_no_host_and_invalid_host():
    d = decide(cand("a", host=None, wildcard="Subdomain"), cand("b", host="Upper.example.com"),
               cand("c", host="localhost"))
    assert d["ns/a"].reason == "ExtendedValidationFailed"  # wildcard without host is invalid
    assert d["ns/b"].reason == "InvalidHost"
    assert d["ns/b"].message.startswith("host name validation errors: spec.host: Invalid value: ")
    assert "at least two segments" in d["ns/c"].message
    assert admission.candidate(route("n", "ns"), dataclasses.replace(POLICY, domain=""),
                               host="").rejection.reason == "NoHostValue"


def test_non_dns_compliant_host_annotation():
    long_label = "x" * 70 + ".example.com"
    assert cand("a", host=long_label).rejection.reason == "InvalidHost"
    c = cand("b", host=long_label,
             annotations={"route.openshift.io/allow-non-dns-compliant-host": "true"})
    assert c.rejection is None


def test_denied_and_allowed_domains():
    policy = dataclasses.replace(POLICY, denied_domains=frozenset({"bad.com"}),
                                 allowed_domains=frozenset({"example.com"}))
    assert cand("a", host="x.bad.com", policy=policy).rejection.message == "host in list of denied domains"
    assert cand("b", host="x.other.org", policy=policy).rejection.message == \
        "host not in the allowed list of domains"
    assert cand("c", host="x.example.com", policy=policy).rejection is None


def test_subdomain_is_served_under_router_domain():
    c = cand("a", subdomain="shop")
    assert c.host == "shop.apps.example.com" and c.rejection is None


# --- the index: promotion after deletion, and the cost of a change ---

def index_with(*cands: Candidate) -> AdmissionIndex:
    idx = AdmissionIndex()
    for c in cands:
        idx.put(c)
    return idx


def test_promotion_after_deleting_the_owner():
    owner = cand("a", "ns1", host="h.example.com", created=T1)
    second = cand("b", "ns2", host="h.example.com", created=T2)
    third = cand("c", "ns3", host="h.example.com", created=T3)
    idx = index_with(owner, second, third)
    before = idx.evaluate(idx.group_keys(owner), POLICY)
    assert [before[c.uid].admitted for c in (owner, second, third)] == [True, False, False]
    old = idx.discard(owner.uid)
    after = idx.evaluate(idx.group_keys(old), POLICY)
    assert owner.uid not in after
    assert after[second.uid].admitted and not after[third.uid].admitted


def test_changing_host_promotes_on_the_old_host_and_competes_on_the_new():
    a = cand("a", "ns1", host="h1.example.com", created=T1)
    b = cand("b", "ns2", host="h1.example.com", created=T2)
    c = cand("c", "ns3", host="h2.example.com", created=T3)
    idx = index_with(a, b, c)
    moved = dataclasses.replace(a, host="h2.example.com")
    old, changed = idx.put(moved)
    assert changed
    d = idx.evaluate(idx.group_keys(old) | idx.group_keys(moved), POLICY)
    assert d[b.uid].admitted  # promoted on h1
    assert d[a.uid].admitted and not d[c.uid].admitted  # a is older than c on h2


def test_change_costs_its_host_group_not_all_routes():
    many = [cand(f"r{i}", f"ns{i % 7}", host=f"r{i}.example.com") for i in range(300)]
    same = [cand(f"s{i}", "other", host="shared.example.com") for i in range(3)]
    idx = index_with(*many, *same)
    assert len(idx.evaluate(idx.group_keys(same[0]), POLICY)) == 3
    # A wildcard route in the domain widens the group to the whole domain.
    w = cand("w", "ns0", host="www.example.com", wildcard="Subdomain")
    idx.put(w)
    assert len(idx.evaluate(idx.group_keys(same[0]), POLICY)) == 304
    # ...and removing it re-evaluates the domain once more, then groups shrink back.
    old = idx.discard(w.uid)
    assert len(idx.evaluate(idx.group_keys(old), POLICY)) == 303
    assert len(idx.evaluate(idx.group_keys(same[0]), POLICY)) == 3


def test_unchanged_candidate_is_not_a_change():
    a = cand("a", host="h.example.com")
    idx = index_with(a)
    assert idx.put(a) == (a, False)


def test_result_does_not_depend_on_input_order():
    import random

    cands = [cand(f"r{i}", f"ns{i % 3}", host=f"h{i % 4}.example.com", path=f"/{i % 2}",
                  wildcard="Subdomain" if i % 9 == 0 else None) for i in range(40)]
    expected = admit(cands, POLICY)
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(cands)
        assert admit(cands, POLICY) == expected
