"""Who acts: the principal a command is decided for, and the roles it may hold.

The gateway authenticates a caller (a JWT or an API key) and puts the verified principal
on the command; clients never set it. A service that produces commands to Kafka directly
sets its own principal, which its Kafka credentials (ACLs on the commands topic) vouch
for. The shard checks every command's principal against the account's owner and the
principal's roles (who may do what is decided by the ledger, in one place), so the same
rule holds whatever path a command took.

Roles are independent; a principal may hold several:
    OWNER     an account holder: reads its own accounts, moves money out of them
    OPERATOR  runs the ledger day to day: lock/unlock, limits, reversals, closing accounts
    ADMIN     opens accounts and assigns their owners
    AUDITOR   reads everything, changes nothing
"""

from __future__ import annotations

import dataclasses
import enum

PRINCIPAL_ID_LENGTH_MAX = 128
PRINCIPAL_ROLES_MAX = 4


class Role(enum.StrEnum):
    OWNER = "OWNER"
    OPERATOR = "OPERATOR"
    ADMIN = "ADMIN"
    AUDITOR = "AUDITOR"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    principal_id: str  # the subject of the token, or the API key's name
    roles: frozenset[Role]

    def has(self, role: Role) -> bool:
        return role in self.roles


# What a command written before commands carried a principal (a v1 message) is decided as:
# nobody, with no role, refused wherever a role is needed. Also the Avro field's default.
ANONYMOUS = Principal(principal_id="", roles=frozenset())
