"""What a libvirt VM's cloud-init disk carries besides its user-data: the meta-data that names the
instance and the network-config that gives the node its fixed address."""

from __future__ import annotations

import hashlib

import yaml

from components.config.settings import Settings


def network_config(settings: Settings, address: str) -> str:
    """Netplan v2 for cloud-init: the node's fixed address; libvirt's host side (.1) routes and resolves."""
    gateway = str(settings.network_cidr[1])
    config = {
        "version": 2,
        "ethernets": {
            "primary": {
                "match": {"name": "en*"},
                "addresses": [f"{address}/{settings.network_cidr.prefixlen}"],
                "routes": [{"to": "default", "via": gateway}],
                "nameservers": {"addresses": [gateway]},
            }
        },
    }
    return yaml.safe_dump(config, sort_keys=True)


def meta_data(node_name: str, user_data_text: str) -> str:
    # A new instance-id whenever the user-data changes makes cloud-init treat the VM as new.
    digest = hashlib.sha256(user_data_text.encode()).hexdigest()[:16]
    return yaml.safe_dump({"instance-id": f"{node_name}-{digest}", "local-hostname": node_name}, sort_keys=True)
