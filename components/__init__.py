"""hashistack components, one package per stage of the data flow (README, Layout):
config -> pki -> nodes -> dynamic -> rollout -> platforms -> bootstrap -> access -> workloads.
A stage imports only itself and the stages before it (tests/test_layout.py)."""

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
"""The repository: the templates (cloudinit/), policies/, jobs/ and libvirt/ stylesheets are read from it."""
