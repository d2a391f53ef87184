"""Users and roles (§1.3–§1.5, §6): the user documents, token checks, login with lockout, first-boot setup,
EXECUTE AS USER, and CREATE/ALTER/DROP USER. Password hashing and JWTs are ``_auth``'s."""

from __future__ import annotations

import threading
import time
from typing import Any

from . import _faults
from ._auth import TokenError, check_password, decode_token, hash_password
from ._records import ADMIN, Ctx, now_ms, require_admin, rfc3339, unq
from ._storage import HotStore
from ._types import Principal
from ._values import SqlFailure, denied

__all__ = ["Accounts"]

ROLE_WORDS = {
    "dba": "dba",
    "admin": "dba",
    "service": "service",
    "developer": "service",
    "analyst": "service",
    "user": "user",
    "viewer": "user",
    "readonly": "user",
    "system": "system",
}


def _user_doc(uid: str, role: str, password: str | None, email: str | None) -> dict[str, Any]:
    t = now_ms()
    return {
        "user_id": uid,
        "role": role,
        "email": email,
        "auth_type": "password" if password else "internal",
        "password_hash": hash_password(password) if password else None,
        "created_at": t,
        "updated_at": t,
        "deleted_at": None,
        "failed_login_attempts": 0,
        "locked_until": None,
        "last_login_at": None,
    }


class Accounts:
    """The users (documents in SQLite, soft-deleted), verified-token cache, login and user statements."""

    def __init__(self, store: HotStore, lock: threading.RLock, jwt_secret: str):
        self.store = store
        self.lock = lock
        self.jwt_secret = jwt_secret
        self.users: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, tuple[str, Any, float]] = {}  # verified access token -> (sub, role, exp)

    def load(self, root_password: str | None) -> None:
        for k, d in self.store.docs("user"):
            self.users[k] = d
        if "root" not in self.users:
            self.users["root"] = _user_doc("root", "system", root_password or "", None)
            self.store.put_doc("user", "root", self.users["root"])

    # ------------------------------------------------------------------ tokens and login
    def verify_token(self, token: str) -> Principal:
        """The principal of a bearer access token; raises TokenError (code INVALID_CREDENTIALS/TOKEN_EXPIRED).

        A token whose signature was verified once is remembered until it expires (decoding costs as much as a
        small statement); the user's existence and current role are checked on every call. Runs without the
        engine lock (single dict reads), so the event loop never waits for a running statement."""
        hit = self._tokens.get(token)
        if hit is not None and time.time() <= hit[2] + 60:  # the same 60 s leeway as decode_token
            sub, role = hit[0], hit[1]
        else:
            claims = decode_token(self.jwt_secret, token, "access")
            sub, role = str(claims["sub"]), claims.get("role")
            if len(self._tokens) >= 10000:
                self._tokens.clear()
            self._tokens[token] = (sub, role, float(claims["exp"]))
        u = self.users.get(sub)
        if u is None or u["deleted_at"] is not None or role != u["role"]:
            raise TokenError("INVALID_CREDENTIALS", "Invalid credentials")
        return Principal(u["user_id"], u["role"])

    def verify_refresh(self, token: str) -> dict[str, Any]:
        claims = decode_token(self.jwt_secret, token, "refresh")
        with self.lock:
            u = self.users.get(str(claims["sub"]))
            if u is None or u["deleted_at"] is not None or claims.get("role") != u["role"]:
                raise TokenError("INVALID_CREDENTIALS", "Invalid credentials")
            return u

    def login(self, user: str, password: str) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
        """(status, error body or {}, user doc on success)."""
        with self.lock:
            u = self.users.get(user)
            if u is None or u["deleted_at"] is not None:
                return 401, {"error": "unauthorized", "message": "Invalid credentials"}, None
            t = now_ms()
            if u.get("locked_until") and u["locked_until"] > t:
                return (
                    401,
                    {
                        "error": "account_locked",
                        "message": "Account is locked due to too many failed "
                        "login attempts. Try again later.",
                    },
                    None,
                )
            if u["user_id"] == "root" and not u["password_hash"] and password == "":
                return (
                    428,
                    {
                        "error": "setup_required",
                        "message": "Server requires initial setup. Root password is not configured.",
                    },
                    None,
                )
            if not check_password(password, u["password_hash"]):
                u["failed_login_attempts"] = u.get("failed_login_attempts", 0) + 1
                if u["failed_login_attempts"] >= 5:
                    u["locked_until"] = t + 15 * 60 * 1000
                    u["failed_login_attempts"] = 0
                self.store.put_doc("user", user, u)
                return 401, {"error": "unauthorized", "message": "Invalid credentials"}, None
            u["failed_login_attempts"] = 0
            u["locked_until"] = None
            u["last_login_at"] = t
            self.store.put_doc("user", user, u)
            return 200, {}, u

    def needs_setup(self) -> bool:
        with self.lock:
            return not self.users["root"]["password_hash"]

    def setup(
        self, user: str, password: str, root_password: str, email: str | None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if not self.needs_setup():
                return 409, {"error": "already_configured", "message": "Server is already configured"}
            for p in (password, root_password):
                if not 8 <= len(p) <= 72 or p.lower() in ("password", "12345678", "password123", "qwerty123"):
                    return 400, {
                        "error": "weak_password",
                        "message": "Password must be 8-72 characters and not a common password",
                    }
            if not user or user == "root" or any(x in user for x in ("..", "/", "\\", "\0")):
                return 400, {"error": "invalid_user", "message": f"Invalid user name '{user}'"}
            if user in self.users:
                return 409, {"error": "user_exists", "message": f"User '{user}' already exists"}
            root = self.users["root"]
            root["password_hash"] = hash_password(root_password)
            root["auth_type"] = "password"
            root["updated_at"] = now_ms()
            self.store.put_doc("user", "root", root)
            self.users[user] = _user_doc(user, "dba", password, email)
            self.store.put_doc("user", user, self.users[user])
            return 200, {
                "user": self.user_json(self.users[user]),
                "message": "Server setup complete. Root password set and DBA user created. Please log in.",
            }

    def user_json(self, u: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": u["user_id"],
            "role": u["role"],
            "email": u["email"],
            "created_at": rfc3339(u["created_at"]),
            "updated_at": rfc3339(u["updated_at"]),
        }

    # ------------------------------------------------------------------ EXECUTE AS USER
    def impersonate(self, principal: Principal, target: str, ns: str) -> Ctx:
        if not target or any(x in target for x in ("..", "/", "\\", "\0")):
            raise SqlFailure(f"Invalid user id '{target}' in EXECUTE AS USER", "INVALID_INPUT")
        u = self.users.get(target)
        trole = u["role"] if u is not None and u["deleted_at"] is None else "user"
        allowed = {
            "system": ("system", "dba", "service", "user"),
            "dba": ("dba", "service", "user"),
            "service": ("service", "user"),
            "user": (),
        }[principal.role]
        if not (trole in allowed or target == principal.user_id):
            raise denied(
                f"EXECUTE AS USER is not authorized: role '{principal.role}' cannot act as '{target}' "
                f"(role '{trole}')"
            )
        owner = principal.user_id if _faults.active("execute_as_wrong_partition") else target
        return Ctx(principal, owner, "user", target, True, ns)

    # ------------------------------------------------------------------ statements
    def create_user(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        require_admin(ctx, "user management")
        if_not, uid, pw, role, email = m
        uid = unq(uid) or ""
        role_word = (unq(role) or "").lower()
        if role_word not in ROLE_WORDS:
            raise SqlFailure(f"Invalid role '{role_word}': use user, service, dba or system")
        if not uid or any(x in uid for x in ("..", "/", "\\", "\0")):
            raise SqlFailure(f"Invalid user id '{uid}'")
        if uid in self.users:
            if if_not:
                return {"row_count": 0, "message": f"User '{uid}' already exists"}
            raise SqlFailure(f"User '{uid}' already exists")
        if ROLE_WORDS[role_word] == "system" and ctx.role != "system":
            raise denied("Only the system role can create system users")
        self.users[uid] = _user_doc(uid, ROLE_WORDS[role_word], unq(pw), unq(email))
        self.store.put_doc("user", uid, self.users[uid])
        return {"row_count": 0, "message": f"User '{uid}' created"}

    def alter_user(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        uid, what, value = unq(m[0]) or "", m[1].upper(), unq(m[2]) or ""
        if not (ctx.role in ADMIN or (uid == ctx.principal.user_id and what == "PASSWORD")):
            raise denied("Admin privileges (DBA or System role) required for user management")
        u = self.users.get(uid)
        if u is None or u["deleted_at"] is not None:
            raise SqlFailure(f"User '{uid}' not found")
        if what == "PASSWORD":
            u["password_hash"] = hash_password(value)
            u["auth_type"] = "password"
        elif what == "ROLE":
            if value.lower() not in ROLE_WORDS:
                raise SqlFailure(f"Invalid role '{value}': use user, service, dba or system")
            u["role"] = ROLE_WORDS[value.lower()]
        else:
            u["email"] = value
        u["updated_at"] = now_ms()
        self.store.put_doc("user", uid, u)
        return {"row_count": 0, "message": f"User '{uid}' updated"}

    def drop_user(self, ctx: Ctx, m: tuple[Any, ...]) -> dict[str, Any]:
        require_admin(ctx, "user management")
        if_exists, uid = m[0], unq(m[1]) or ""
        u = self.users.get(uid)
        if u is None or u["deleted_at"] is not None:
            if if_exists:
                return {"row_count": 0, "message": f"User '{uid}' does not exist"}
            raise SqlFailure(f"User '{uid}' not found")
        if uid == "root":
            raise SqlFailure("Cannot drop the root user")
        u["deleted_at"] = now_ms()
        self.store.put_doc("user", uid, u)
        return {"row_count": 0, "message": f"User '{uid}' dropped (soft delete)"}
