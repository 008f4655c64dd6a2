"""Call lists in and results out: reading CSV uploads, loading them into campaigns, exporting what happened.

Owns the rows a campaign gets from its file (``scheduled_events`` rows created by an import, ``import_issues``,
``upload_chunks``) and the CSV formats of DESIGN.md §4. Modules:

- :mod:`.reading` (:func:`open_call_list`), :mod:`.header`, :mod:`.rows`, :mod:`.dates`, :mod:`.call_list`:
  parsing a call list with bounded memory (encoding and delimiter detection, header normalization and the
  campaign's mapping of :mod:`campaigns.mapping`, row validation, dates and times, the SMS template of
  :mod:`campaigns.templates` rendered per row); no database.
  Phone numbers are normalized by :mod:`campaigns.phones`.
- :mod:`.loader`: staging, deduplication and COPY into a campaign (:func:`load_call_list`), with the
  :class:`StagingHook` contract for checks run on the staged rows (do-not-contact, recurring due times).
- :mod:`.uploads`: uploads stored in PostgreSQL and their background import (:func:`run_stored_import`).
- :mod:`.new_campaign`: :func:`import_new_campaign`, the one way to create a campaign from a CSV.
- :mod:`.export`: the results, per-attempt and rejected-rows CSV exports.
"""

from campaigns.importing.call_list import (
    PHONE_ALIASES,
    CsvFileError,
    CsvLayout,
    ParsedRow,
    RowError,
    SettingsMismatch,
)
from campaigns.importing.export import export_attempts, export_issues, export_results
from campaigns.importing.loader import (
    DEFAULT_STAGING_HOOKS,
    ImportIssueRow,
    ImportReport,
    Progress,
    StagingHook,
    apply_report,
    load_call_list,
    load_rows,
    read_options,
)
from campaigns.importing.new_campaign import HooksForLayout, NewCampaignImport, import_new_campaign
from campaigns.importing.reading import open_call_list
from campaigns.importing.uploads import UploadReader, delete_upload, run_stored_import, store_upload

__all__ = [
    "DEFAULT_STAGING_HOOKS",
    "PHONE_ALIASES",
    "CsvFileError",
    "CsvLayout",
    "HooksForLayout",
    "ImportIssueRow",
    "ImportReport",
    "NewCampaignImport",
    "ParsedRow",
    "Progress",
    "RowError",
    "SettingsMismatch",
    "StagingHook",
    "UploadReader",
    "apply_report",
    "delete_upload",
    "export_attempts",
    "export_issues",
    "export_results",
    "import_new_campaign",
    "load_call_list",
    "load_rows",
    "open_call_list",
    "read_options",
    "run_stored_import",
    "store_upload",
]
