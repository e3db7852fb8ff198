"""Stage 6, the cluster's first steps: Consul preset tokens, Nomad ACL bootstrap, Vault unsealed, the CA file.

A deployed stack's state names each dynamic provider by the module it was pickled from (dill, by
reference). Before the layout by stage these classes lived in the module components.bootstrap, so states hold
`components.bootstrap.<Provider>`; the names below keep those states loadable (preview, up, destroy).
tests/test_deployed_state.py fails if one goes.
"""

from components.bootstrap.ca_file import _CaFileProvider
from components.bootstrap.steps import (
    _ConsulPresetTokensProvider,
    _NomadAclBootstrapProvider,
    _VaultUnsealedProvider,
)
from components.rollout.vault_init import _VaultInitProvider

__all__ = [
    "_CaFileProvider",
    "_ConsulPresetTokensProvider",
    "_NomadAclBootstrapProvider",
    "_VaultInitProvider",
    "_VaultUnsealedProvider",
]
