"""The read-only role BI tools use on PostgreSQL: ``insiders_reader``.

It may read the schemas BI is meant to read (:data:`READER_SCHEMAS`: the answers in
``insiders`` and the customer marts in ``marts``) and nothing else: no ``raw``,
``staging``, ``intermediate`` or ``ml``, no writing anywhere. dbt replaces a table by
building a new one and renaming it, which would drop a grant made on the old table, so
the role also gets default privileges: every table the pipeline's role creates later in
those schemas is readable by it at once, with no step to re-grant after a run.

Created (or brought up to date) by ``insiders reader-role``, run as the pipeline's own
role (the owner of the schemas, with CREATEROLE). With ``$INSIDERS_READER_PASSWORD`` set
the role can log in with that password (what Metabase is given); without it, it is a
group role to grant to the team's own logins (``grant insiders_reader to alice``).
"""

from __future__ import annotations

import re
from typing import Any

READER_ROLE = "insiders_reader"
READER_PASSWORD_ENV = "INSIDERS_READER_PASSWORD"
READER_SCHEMAS: tuple[str, ...] = ("marts", "insiders")
PRIVATE_SCHEMAS: tuple[str, ...] = ("raw", "staging", "intermediate", "ml")
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleError(ValueError):
    """A role name that is not a plain lower-case identifier; one line."""


def check_role(name: str) -> str:
    if not _ROLE_NAME.fullmatch(name):
        raise RoleError(
            f"--role {name!r}: a role name is lower-case letters, digits and _ "
            "(at most 63, not starting with a digit)"
        )
    return name


def grant_reader(con: Any, role: str = READER_ROLE, password: str | None = None) -> list[str]:
    """Create or update ``role`` as a read-only reader of :data:`READER_SCHEMAS`, in one
    transaction of ``con``; the lines saying what it did (never the password).

    Identifiers and the password reach the server through psycopg's ``sql`` quoting
    (utility statements take no bound parameters)."""
    from psycopg import sql

    role = check_role(role)
    ident = sql.Identifier(role)
    done: list[str] = []
    with con.transaction():
        exists = con.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone()
        login = sql.SQL("login password {}").format(sql.Literal(password)) if password else None
        options = login or sql.SQL("nologin")
        verb = "alter" if exists else "create"
        con.execute(sql.SQL(verb + " role {} ").format(ident) + options)
        done.append(f"{verb}d role {role} ({'login' if password else 'no login'})")
        database = sql.Identifier(con.info.dbname)
        con.execute(sql.SQL("grant connect on database {} to {}").format(database, ident))
        statements = (
            "grant usage on schema {} to {}",
            "grant select on all tables in schema {} to {}",
            "alter default privileges in schema {} grant select on tables to {}",
        )
        for schema in READER_SCHEMAS:
            name = sql.Identifier(schema)
            con.execute(sql.SQL("create schema if not exists {}").format(name))
            for statement in statements:
                con.execute(sql.SQL(statement).format(name, ident))
            done.append(f"{role} may read every table of {schema}, now and after every run")
        for schema in PRIVATE_SCHEMAS:
            name = sql.Identifier(schema)
            con.execute(sql.SQL("create schema if not exists {}").format(name))
            for statement in (
                "revoke all on schema {} from {}",
                "revoke all on all tables in schema {} from {}",
            ):
                con.execute(sql.SQL(statement).format(name, ident))
    return done
