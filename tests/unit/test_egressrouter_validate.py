"""Semantic validation: reasons are CamelCase and messages name the field."""
import pytest

from netshift.egressrouter.validate import validate
from tests.support.egressrouters import router


def problems(name="egress", **changes):
    r = router(**changes)
    return [(p.reason, p.field) for p in validate(name, r.spec)], [p.message for p in validate(name, r.spec)]


def test_valid_router_has_no_problems():
    assert problems() == ([], [])


def test_ip_without_prefix_names_the_field():
    found, messages = problems(addresses=[{"ip": "10.0.0.5", "gateway": "10.0.0.1"}])
    assert ("InvalidAddress", "spec.addresses[0].ip") in found
    assert messages[0].startswith('spec.addresses[0].ip: "10.0.0.5" is not a CIDR')


def test_every_problem_is_reported_at_once():
    found, _ = problems(addresses=[{"ip": "10.0.0.5"}, {"ip": "fd00::5/64", "gateway": "10.0.0.1"}])
    assert ("InvalidAddress", "spec.addresses[0].ip") in found
    assert ("GatewayFamilyMismatch", "spec.addresses[1].gateway") in found


def test_empty_addresses():
    assert ("NoAddresses", "spec.addresses") in problems(addresses=[])[0]


@pytest.mark.parametrize("ip, reason", [
    ("192.168.12.0/24", "InvalidAddress"),      # network address
    ("192.168.12.255/24", "InvalidAddress"),    # broadcast
    ("192.168.12.300/24", "InvalidAddress"),
])
def test_bad_addresses(ip, reason):
    assert (reason, "spec.addresses[0].ip") in problems(addresses=[{"ip": ip, "gateway": "192.168.12.1"}])[0]


def test_gateway_checks():
    assert ("GatewayNotInSubnet", "spec.addresses[0].gateway") in problems(
        addresses=[{"ip": "192.168.12.99/24", "gateway": "192.168.13.1"}])[0]
    assert ("InvalidGateway", "spec.addresses[0].gateway") in problems(
        addresses=[{"ip": "192.168.12.99/24", "gateway": "192.168.12.99"}])[0]
    assert ("ConflictingGateways", "spec.addresses[1].gateway") in problems(
        addresses=[{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"},
                   {"ip": "192.168.12.98/24", "gateway": "192.168.12.2"}])[0]
    # a /32 source may use any gateway (on-link by the agent), as upstream allows
    assert problems(addresses=[{"ip": "192.168.12.99/32", "gateway": "192.168.12.1"}])[0] == []


def test_destination_family_and_duplicates():
    redirect = {"redirectRules": [
        {"destinationIP": "fd00::1", "port": 80, "protocol": "TCP"},
        {"destinationIP": "10.0.0.1", "port": 53, "protocol": "UDP"},
        {"destinationIP": "10.0.0.2", "port": 53, "protocol": "UDP"},
        {"destinationIP": "10.0.0.3", "port": 53, "protocol": "TCP"},
    ]}
    found, messages = problems(redirect=redirect)
    assert ("DestinationFamilyMismatch", "spec.redirect.redirectRules[0].destinationIP") in found
    assert ("DuplicateRedirectRule", "spec.redirect.redirectRules[2].port") in found
    assert not any(f == "spec.redirect.redirectRules[3].port" for _, f in found)
    assert any("already redirected by redirectRules[1]" in m for m in messages)


def test_same_port_in_both_families_is_allowed():
    spec = {"addresses": [{"ip": "192.168.12.99/24", "gateway": "192.168.12.1"},
                          {"ip": "fd00::99/64", "gateway": "fd00::1"}],
            "redirect": {"redirectRules": [
                {"destinationIP": "10.0.0.1", "port": 80, "protocol": "TCP"},
                {"destinationIP": "2001:db8::1", "port": 80, "protocol": "TCP"}]}}
    assert problems(**spec) == ([], [])


def test_destination_needs_gateway_when_off_link():
    found, _ = problems(addresses=[{"ip": "192.168.12.99/24"}],
                        redirect={"redirectRules": [{"destinationIP": "10.0.0.1", "port": 80, "protocol": "TCP"}]})
    assert found == [("NoGatewayForDestination", "spec.redirect.redirectRules[0].destinationIP")]


def test_redirect_targets():
    assert ("NoRedirectTarget", "spec.redirect") in problems(redirect={})[0]
    assert ("RedirectMissing", "spec.redirect") in problems(redirect=None)[0]
    assert ("InvalidFallbackIP", "spec.redirect.fallbackIP") in problems(redirect={"fallbackIP": "nope"})[0]
    assert ("DestinationFamilyMismatch", "spec.redirect.fallbackIP") in problems(
        redirect={"fallbackIP": "2001:db8::1"})[0]
    assert ("InvalidDestinationIP", "spec.redirect.fallbackIP") in problems(
        redirect={"fallbackIP": "192.168.12.99"})[0]
    assert problems(redirect={"fallbackIP": "192.168.12.50"}) == ([], [])


def test_names_that_cannot_name_a_service():
    assert ("InvalidName", "metadata.name") in problems(name="egress.router")[0]
    assert ("InvalidName", "metadata.name") in problems(name="1router")[0]
    assert ("InvalidName", "metadata.name") in problems(name="a" * 64)[0]


def test_macvlan_master_name():
    found, _ = problems(networkInterface={"macvlan": {"mode": "Bridge", "master": "a-very-long-interface0"}})
    assert ("InvalidMacvlanMaster", "spec.networkInterface.macvlan.master") in found


def test_agrees_with_the_agent_parser():
    """What the operator accepts, the agent accepts (the operator also runs the agent's parser)."""
    from netshift.agent.config import parse_spec

    parse_spec(router().spec.to_dict())
