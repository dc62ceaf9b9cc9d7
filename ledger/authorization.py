"""Who may do what: the ledger's one table of command type -> rule, and the check a shard
runs on every command before anything else of it is looked at.

    command type                                          who may send it
    OpenAccount, AssignOwner                              ADMIN
    Deposit, UpdateLimits, LockAccount, UnlockAccount,
      CloseAccount, ReverseTransfer                       OPERATOR
    Withdraw, Transfer, Batch, PlaceHold, CaptureHold,
      VoidHold                                            OWNER, and the owner of every account it debits
    QueryCommand                                          OPERATOR, AUDITOR; or the principal that sent
                                                          the command asked about

A principal may hold several roles; any one of a rule's roles will do. The anonymous
principal (no id, no role: what a command written before commands carried a principal
decodes to) holds none, so it is refused everywhere. Deposits bring money in from outside
the ledger: the back office's (OPERATOR), never an owner's. A denied command is rejected
as FORBIDDEN and changes nothing; the decision reads only the command and the shard's
state (the owners of its accounts, the sender of a remembered command), so a replay of
the same inputs decides the same. The gateway refuses early, from the same table, what no
role of the principal could send (gateway/authorization.py).

A batch debits accounts on several shards: the shard that takes the command checks the
legs whose accounts it owns; each other shard checks its own debited leg when the prepare
arrives (`check_debit`), and its refusal votes the batch down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ledger.accounts import Account
from ledger.commands import (
    AssignOwner,
    Batch,
    CaptureHold,
    CloseAccount,
    Command,
    Deposit,
    LockAccount,
    OpenAccount,
    PlaceHold,
    QueryCommand,
    ReverseTransfer,
    SetVelocityRules,
    Transfer,
    UnlockAccount,
    UpdateLimits,
    VoidHold,
    Withdraw,
)
from ledger.errors import ErrorCode, Rejection
from ledger.principals import Principal, Role


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    roles: frozenset[Role]  # any one of them
    owns_debited: bool = False  # and the principal owns every account the command debits
    or_sender: bool = False  # or, without the roles, the principal sent the command asked about


_ADMIN = Rule(roles=frozenset({Role.ADMIN}))
_OPERATOR = Rule(roles=frozenset({Role.OPERATOR}))
_OWNER = Rule(roles=frozenset({Role.OWNER}), owns_debited=True)

RULES: dict[type[Command], Rule] = {
    OpenAccount: _ADMIN,
    AssignOwner: _ADMIN,
    Deposit: _OPERATOR,
    UpdateLimits: _OPERATOR,
    LockAccount: _OPERATOR,
    UnlockAccount: _OPERATOR,
    CloseAccount: _OPERATOR,
    ReverseTransfer: _OPERATOR,
    SetVelocityRules: _OPERATOR,
    Withdraw: _OWNER,
    Transfer: _OWNER,
    Batch: _OWNER,
    PlaceHold: _OWNER,
    CaptureHold: _OWNER,
    VoidHold: _OWNER,
    QueryCommand: Rule(roles=frozenset({Role.OPERATOR, Role.AUDITOR}), or_sender=True),
}

# Commands only these roles may send are privileged: each is audited, allowed or not.
PRIVILEGED_ROLES = frozenset({Role.OPERATOR, Role.ADMIN})


def is_privileged(command_type: type[Command]) -> bool:
    return RULES[command_type].roles <= PRIVILEGED_ROLES


def debited_accounts(command: Command) -> list[str]:
    """The accounts a command takes money (or a hold's reservation) out of."""
    match command:
        case Withdraw() | PlaceHold() | CaptureHold() | VoidHold():
            return [command.account_id]
        case Transfer():
            return [command.from_account_id]
        case Batch():
            return [leg.account_id for leg in command.legs if leg.amount < 0]
    return []


def forbidden(message: str) -> Rejection:
    return Rejection(ErrorCode.FORBIDDEN, message)


def _name(principal: Principal) -> str:
    return f"principal {principal.principal_id!r}" if principal.principal_id else "the anonymous principal"


def authorize(
    command: Command,
    *,
    owner_of: Callable[[str], str | None],
    is_local: Callable[[str], bool],
    sender: Callable[[], str | None],
) -> Rejection | None:
    """None if the command's principal may send it; else FORBIDDEN. `owner_of(account)`:
    the owner of an account of this shard (None: no such account); `sender()`: who sent
    the command a QueryCommand asks about (None: not remembered here). Debited accounts
    of other shards are left to them."""
    principal = command.principal
    rule = RULES[type(command)]
    if principal.roles.isdisjoint(rule.roles):
        if rule.or_sender and principal.principal_id and sender() == principal.principal_id:
            return None
        needed = " or ".join(sorted(rule.roles))
        also = " (or to have sent the command asked about)" if rule.or_sender else ""
        return forbidden(f"{type(command).__name__} needs the role {needed}{also}; {_name(principal)} has none of them")
    if rule.owns_debited:
        for account_id in debited_accounts(command):
            if is_local(account_id) and not owns(principal, owner_of(account_id)):
                return forbidden(f"{_name(principal)} does not own account {account_id}")
    return None


def owns(principal: Principal, owner: str | None) -> bool:
    """An account whose owner is `owner` (None: no such account, "": none) is this principal's."""
    return bool(owner) and owner == principal.principal_id


def check_debit(principal: Principal, account: Account | None, account_id: str) -> Rejection | None:
    """A batch leg debiting an account of this shard, for a batch another shard took: the
    principal needs the OWNER role (the taking shard checked it too) and this account."""
    if not principal.has(Role.OWNER) or not owns(principal, None if account is None else account.owner):
        return forbidden(f"{_name(principal)} does not own account {account_id}")
    return None
