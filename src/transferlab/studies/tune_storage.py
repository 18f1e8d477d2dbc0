"""Where a ``transferlab tune`` study lives, checked before anything is written: a journal file (Optuna's file
storage) or a database URL (``postgresql://``, ``mysql://``, ``sqlite:///``: Optuna's RDB storage through
SQLAlchemy). A URL's credentials are never shown: everything printed or written shows :func:`redact_url`'s
form (``postgresql://user:***@host/db``), and messages of the driver are scrubbed of the password.

Every problem is one line naming the fix: a text file or random bytes given as the journal, a scheme SQLAlchemy
does not know, a missing driver (with the extra that installs it), a database that cannot be reached or opened.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote, unquote

from transferlab.errors import TransferlabError

ENV = "TRANSFERLAB_TUNE_STORAGE"  # --storage's value when it is not given (keeps a password off command lines)
SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword")  # query parameters that hold a password
# module SQLAlchemy imports for a dialect -> how to install it
DRIVERS = {"psycopg": 'pip install "transferlab[postgres]" (psycopg 3, the driver of postgresql:// URLs)',
           "psycopg2": 'pip install psycopg2-binary, or write postgresql:// and pip install "transferlab[postgres]"',
           "MySQLdb": "pip install mysqlclient, or write mysql+pymysql:// and pip install pymysql",
           "pymysql": "pip install pymysql"}


USER_PASSWORD = r"^([^:/?#@]+://[^:/?#@]*):([^?#]*)@"  # scheme://user:password@ (to the last @ before any ?)


def is_url(storage: str) -> bool:
    return "://" in storage


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` query parameter) shown as ``***``."""
    shown = re.sub(USER_PASSWORD, r"\1:***@", url)
    keys = "|".join(SECRET_KEYS)
    return re.sub(rf"([?&](?:{keys})=)[^&#]*", r"\1***", shown, flags=re.IGNORECASE)


def secrets(url: str) -> list[str]:
    """The passwords in ``url`` as written, decoded and encoded (to scrub them from a driver's messages)."""
    found = []
    user = re.match(USER_PASSWORD, url)
    if user:
        found.append(user.group(2))
    found += re.findall(rf"[?&](?:{'|'.join(SECRET_KEYS)})=([^&#]*)", url, flags=re.IGNORECASE)
    return sorted({v for s in found if s for v in (s, unquote(s), quote(unquote(s), safe=""))}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` and every password in it replaced by their redacted forms."""
    text = text.replace(url, redact_url(url))
    for secret in secrets(url):
        text = text.replace(secret, "***")
    return text


def check_url(url: str) -> None:
    """A URL SQLAlchemy can parse, of a dialect it knows, whose driver is installed; else one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact_url(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        raise TransferlabError(f"--storage {shown}: {scheme!r} is not a database SQLAlchemy knows: give a "
                               f"postgresql://, mysql:// or sqlite:/// URL, or a journal file path") from None
    except (ArgumentError, ValueError) as exc:
        raise TransferlabError(f"--storage {shown} is not a database URL ({scrub(str(exc), url)}): write "
                               f"dialect://user:password@host/database") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (getattr(exc, "name", None) or str(exc)).split(".")[0]
        fix = DRIVERS.get(module, f"install the Python package that provides {module!r}")
        raise TransferlabError(f"--storage {shown} needs the database driver {module!r}, which is not installed: "
                               f"{fix}") from None
    if parsed.get_backend_name() == "sqlite":
        check_sqlite(parsed.database, shown)


def check_sqlite(database: str | None, shown: str) -> None:
    """A SQLite file that can be opened: its folder exists, and an existing file is a SQLite database."""
    if not database or database == ":memory:":
        raise TransferlabError(f"--storage {shown} names no file: a study must outlive the command; write "
                               f"sqlite:///path/to/studies.db")
    path = Path(database)
    if not path.parent.is_dir():
        raise TransferlabError(f"--storage {shown}: folder {str(path.parent)!r} does not exist: create it or "
                               f"give another path")
    if path.is_dir() or (path.is_file() and path.stat().st_size and not sqlite_header(path)):
        raise TransferlabError(f"--storage {shown}: {str(path)!r} is not a SQLite database: give a new file "
                               f"name or a database of studies")


def sqlite_header(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\x00"


def check_journal(path: Path) -> None:
    """A journal file that is new, or one Optuna wrote (its first line a JSON record with an ``op_code``);
    not a link (a link would make Optuna append to whatever it points at), not a folder."""
    what = f"--storage {str(path)!r}"
    if path.is_symlink():
        raise TransferlabError(f"{what} is a symbolic link: give the journal file itself (a link would be "
                               f"written through)")
    if path.is_dir():
        raise TransferlabError(f"{what} is a folder: give a journal file path (or a database URL)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise TransferlabError(f"{what}: {str(parent)!r} is a file, not a folder: give another path")
    if not path.is_file() or not path.stat().st_size:
        return
    try:
        with open(path, "rb") as f:
            first = json.loads(f.readline().decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        first = None
    except OSError as exc:
        raise TransferlabError(f"{what} cannot be read ({exc.strerror or exc}): check its permissions") from None
    if not isinstance(first, dict) or "op_code" not in first:
        raise TransferlabError(f"{what} is not an Optuna journal (a file some other program wrote): give a new "
                               f"file name or the journal of a study")


def open_error(exc: Exception, storage: str) -> TransferlabError:
    """The one line for a storage that failed to open (a database down or unreachable, a file not readable)."""
    said = scrub(str(exc), storage).strip().splitlines()
    detail = f"{exc.__class__.__name__}: {said[0]}" if said else exc.__class__.__name__
    if is_url(storage):
        return TransferlabError(f"cannot open the study storage {redact_url(storage)} ({detail}): check the URL, "
                                f"that the database server runs and is reachable from here, and the credentials")
    return TransferlabError(f"cannot open the study journal {storage!r} ({detail}): give a new file name or the "
                            f"journal of a study")
