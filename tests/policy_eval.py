"""A small evaluator of AWS policy documents for tests: explicit deny wins, otherwise an allow is needed.

It understands what datathon's documents use (Action/NotAction/Resource lists with wildcards, Principal "*" or
{"AWS": ...}, the ArnEquals/ArnNotEquals, StringLike and Bool conditions), so tests can ask of a document
"may this principal do that to this resource?" instead of comparing JSON text.
"""

from __future__ import annotations

from fnmatch import fnmatchcase


def _list(v) -> list:
    return v if isinstance(v, list) else [v]


def _condition_holds(cond: dict, ctx: dict) -> bool:
    for op, checks in cond.items():
        for key, wanted in checks.items():
            got = ctx.get(key)
            wanted = _list(wanted)
            if op == "ArnEquals" and got not in wanted:
                return False
            if op == "ArnNotEquals" and got in wanted:
                return False
            if op == "StringLike" and (got is None or not any(fnmatchcase(got, w) for w in wanted)):
                return False
            if op == "Bool" and str(got).lower() not in [str(w).lower() for w in wanted]:
                return False
    return True


def _matches(stmt: dict, action: str, resource: str, ctx: dict) -> bool:
    if "Principal" in stmt:
        p = stmt["Principal"]
        principals = ["*"] if p == "*" else _list(p.get("AWS", []))
        if "*" not in principals and ctx.get("aws:PrincipalArn") not in principals:
            return False
    if "NotAction" in stmt:
        if any(fnmatchcase(action, a) for a in _list(stmt["NotAction"])):
            return False
    elif not any(fnmatchcase(action, a) for a in _list(stmt["Action"])):
        return False
    if not any(fnmatchcase(resource, r) for r in _list(stmt["Resource"])):
        return False
    return _condition_holds(stmt.get("Condition", {}), ctx)


def decide(documents: list[dict], *, principal: str, action: str, resource: str, secure: bool = True,
           prefix: str | None = None) -> str:
    """'deny' (explicit), 'allow', or 'implicit-deny' for a request judged against all documents together."""
    ctx = {"aws:PrincipalArn": principal, "aws:SecureTransport": "true" if secure else "false"}
    if prefix is not None:
        ctx["s3:prefix"] = prefix
    statements = [s for d in documents for s in d["Statement"]]
    if any(s["Effect"] == "Deny" and _matches(s, action, resource, ctx) for s in statements):
        return "deny"
    if any(s["Effect"] == "Allow" and _matches(s, action, resource, ctx) for s in statements):
        return "allow"
    return "implicit-deny"
