"""search-documents: keeps a search index in step with the tasks.

Turns each task event into the task's search document on the topic of the
`topic` setting (`task-documents`), keyed by the task id: a sink (Kafka
Connect's Elasticsearch or OpenSearch sink, or an indexer of your own) keeps
the latest record of each key. A deleted task's document says
`"deleted": true`; `version` rises with every change, so a sink that writes
with external versioning never lets an older document overwrite a newer one
(events of one task arrive in order, but a sink may replay).

Written in Python to show (and test) that a shipped plugin needs no Rust:
built by scripts/build-plugins with componentize-py, against wit/.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.handler import Event, HandlerError, HandlerError_Permanent
from wit_world.imports import config, log, publish
from wit_world.imports.log import Level
from wit_world.imports.types import CallContext

# The task fields a document carries (docs/events.md, `data.task`).
FIELDS = ("id", "owner_id", "title", "description", "status", "priority", "due_at", "created_at", "updated_at", "version")


class Handler(exports.Handler):
    def handle(self, ctx: CallContext, event: Event, attempt: int) -> None:
        try:
            document = document_of(event)
        except (ValueError, KeyError, TypeError) as error:
            raise Err(permanent(f"event {event.id} ({event.type}) has malformed data: {error!r}"))
        topic = setting("topic")
        payload = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        try:
            publish.publish(topic, document["id"], payload.encode("utf-8"))
        except Err as error:
            # Neither refusal passes on a retry: the manifest or the record
            # has to change.
            raise Err(permanent(f"the document of {document['id']} cannot go to {topic}: {error.value.value}"))


def document_of(event: Event) -> dict:
    """The search document of the task `event` is about."""
    task = json.loads(event.data)["task"]
    document = {field: task[field] for field in FIELDS}
    if not isinstance(document["version"], int) or not isinstance(document["id"], str):
        raise ValueError("the task has no integer version or no string id")
    document["deleted"] = event.type == "task.deleted"
    document["event_id"] = event.id
    return document


def setting(name: str) -> str:
    try:
        value = config.get(name)
    except Err as error:
        raise Err(permanent(f"cannot read the setting `{name}`: {error.value.value}"))
    if value is None:
        raise Err(permanent(f"the manifest has no `{name}` under [settings]"))
    return value


def permanent(message: str) -> HandlerError:
    """Logs `message` and answers it as a permanent failure (the event is
    dead-lettered with it)."""
    log.log(Level.ERROR, "handle", message)
    return HandlerError_Permanent(message)
