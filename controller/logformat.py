"""``--log-format json``: one JSON object a line, for log collectors (docs/configuration.md,
"Logs").

Each line has ``ts`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and ``msg`` (the
message with its arguments filled in), ``exc`` when the record carries an exception (its
traceback as one string), and the ids a record names through ``extra``: ``chargerId``,
``sessionId``, ``transactionId`` and ``peer`` (the address or charger a rate-limited line is
about, controller.throttle). A line never spans two lines, whatever a peer put in the message:
JSON escapes every newline.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Record attributes (set with ``extra=``) copied to the line under these names.
ID_FIELDS = {
    "charger_id": "chargerId",
    "session_id": "sessionId",
    "transaction_id": "transactionId",
    "peer": "peer",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, object] = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for attribute, name in ID_FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        # default=str: an id of an unexpected type is written, not a failed log line.
        return json.dumps(line, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int, log_format: str) -> None:
    """The root logger's one handler (stderr), in ``text`` or ``json``."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level, handlers=[handler])
