"""The exit codes of streamwallet's operator commands: what a script may rely on.

0  done: the command was accepted, the account was found, the load was fully accepted,
   every selected dead letter was re-driven (or had been), reconcile found no difference,
   verify found every account's hash chain intact
1  the answer is no: the ledger rejected the command, the account does not exist,
   reconcile found differences, verify found a broken chain
2  nothing was done: bad usage (argparse's own code), a file that cannot be loaded at all,
   or the system cannot be reached (Kafka, its topics, the query service)
3  partly done: some lines of a load were rejected, invalid or timed out, or some dead
   letters could not be re-driven; the rest went through (see the summary)
4  no answer in time: a submitted command's outcome is unknown (it may still be
   applied); submitting it again with the same dedup id is safe
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    NO = 1
    UNAVAILABLE = 2
    PARTIAL = 3
    TIMED_OUT = 4


EXIT_CODES_HELP = __doc__.split("\n", 2)[2].rstrip() if __doc__ else ""


class CommandError(Exception):
    """What stops an operator's command, with the message to print and the code to exit with."""

    def __init__(self, message: str, code: ExitCode = ExitCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.code = code
