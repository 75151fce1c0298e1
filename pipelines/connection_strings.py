"""A destination's connection string whose user or password holds a character it must
percent-encode, refused before it is used.

dlt reads ``postgresql://loader:Pw@Leak-7731@db.example:5432/analytics`` as the password
``Pw`` and the host ``Leak-7731@db.example``: the connection failed naming that "host", and so
printed the rest of the password on stderr, in ``--json``, in the run's record in the pipeline
state, and in status, models and report. A host or database holding ``@`` can only come from
such a string (neither may hold one), so the credentials are refused, naming none of it.
Snowflake's are read the same way (the account is the host; its error blamed the account).
"""

from __future__ import annotations

from typing import Any

import dlt

from pipelines.micrometrics.errors import ConfigurationError
from pipelines.micrometrics.messages import hint

# The parts a password's unencoded "@" (or a "/" or "#" after it) spills into.
SPILLED_INTO = ("host", "database")


def refuse_unencoded_userinfo(credentials: Any, variable: str) -> None:
    """Raises ``ConfigurationError`` when ``credentials`` (dlt's, parsed from the connection
    string in ``variable``) show a user or password that was not percent-encoded."""
    if any("@" in str(getattr(credentials, part, None) or "") for part in SPILLED_INTO):
        raise ConfigurationError(
            f"{variable}: the user or password in the connection string holds a character "
            f"that must be percent-encoded there (the value is not shown here); "
            f"{hint('unencoded_password')}")


class snowflake(dlt.destinations.snowflake):  # noqa: N801 - named as dlt's destinations are
    """dlt's Snowflake destination, refusing a connection string whose user or password was
    not percent-encoded (``refuse_unencoded_userinfo``)."""

    @property
    def destination_type(self) -> str:
        # dlt's own type: the pipeline's state, schemas and checks see no other destination.
        return "dlt.destinations.snowflake"

    def configuration(self, initial_config: Any, accept_partial: bool = False) -> Any:
        config = super().configuration(initial_config, accept_partial=accept_partial)
        if getattr(config, "credentials", None) is not None:
            refuse_unencoded_userinfo(config.credentials, "DESTINATION__SNOWFLAKE__CREDENTIALS")
        return config
