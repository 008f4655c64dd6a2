"""Request and response models of the HTTP API, one module per resource; they are what ``/openapi.json`` says.

Responses are validated against these models as they are served (``extra="forbid"``: a key the domain adds
without a model field is an error, not silently dropped). Request models document the bodies that the domain
validates itself (see ``common.RequestBody``); ``REQUEST_MODELS`` lists them for the schema.
"""

from worker.api.schemas.common import RequestBody
from worker.api.schemas.events import ScheduledEventCreate
from worker.api.schemas.recurring import RecurringDefinitionCreate
from worker.api.schemas.suppressions import SuppressionCreate

REQUEST_MODELS: tuple[type[RequestBody], ...] = (ScheduledEventCreate, SuppressionCreate, RecurringDefinitionCreate)

__all__ = ["REQUEST_MODELS"]
