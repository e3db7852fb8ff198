"""What a libvirt VM's cloud-init disk carries besides its user-data (components/platforms/libvirt/seed.py).

cloud-init hands a version-2 network-config unparsed to netplan where netplan renders the network
(cloud-init 22.4.2, Debian 12's: cloudinit/net/network_state.py parse_config_v2, "Netplan passthrough";
both target releases render with netplan), so the keys are netplan's (canonical/netplan
doc/netplan-yaml.md, read at commit 01c7597e: `version: 2`, `ethernets`, `match.name` with globs,
`addresses` in CIDR notation, `routes`, `nameservers.addresses`). The boot test boots it for real.
"""

from __future__ import annotations

import hashlib

import yaml

from components.platforms.libvirt.seed import meta_data, network_config
from scripts.stack_files import stack_settings


def test_the_network_config_gives_the_node_its_fixed_address_and_the_host_routes_and_resolves():
    settings = stack_settings("dev")
    text = network_config(settings, "192.168.142.11")
    assert yaml.safe_load(text) == {
        "version": 2,
        "ethernets": {
            "primary": {
                # Whatever the NIC is called (ens3, enp1s0): the VM has one.
                "match": {"name": "en*"},
                "addresses": ["192.168.142.11/24"],
                "routes": [{"to": "default", "via": "192.168.142.1"}],
                "nameservers": {"addresses": ["192.168.142.1"]},
            }
        },
    }
    assert text == yaml.safe_dump(yaml.safe_load(text), sort_keys=True), "stable text: no needless new disk"


def test_the_meta_data_names_the_node_and_changes_with_its_user_data():
    user_data = "#cloud-config\na: 1\n"
    first = meta_data("server-0", user_data)
    digest = hashlib.sha256(user_data.encode()).hexdigest()[:16]
    # A new instance-id makes cloud-init treat the VM as new and run the user-data again.
    assert yaml.safe_load(first) == {"instance-id": f"server-0-{digest}", "local-hostname": "server-0"}
    assert first != meta_data("server-0", "#cloud-config\na: 2\n")
    assert first == meta_data("server-0", user_data)
