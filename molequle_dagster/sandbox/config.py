"""Sandbox settings: data size, latency profile, Marketo's limits, and every UNCONFIRMED behaviour.

Where Marketo's sources leave a behaviour open (UNCONFIRMED) or disagree (CONFLICT), it is a setting here
with the likeliest default, so a test (or a data engineer) can flip it and see how the client copes;
docs/marketo.md §14 lists them all.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiClient(_Cfg):
    """A LaunchPoint custom service: credentials and the API-only user that owns it."""

    client_id: str
    client_secret: str
    api_user: str  # bulk jobs are visible only to the user that created them


class LimitSettings(_Cfg):
    rate_calls: int = 100  # per trailing rate_window_s, instance-wide -> 606
    rate_window_s: float = 20.0
    max_in_flight: int = 10  # -> 615
    daily_quota: int = 50_000  # -> 607, resets at midnight quota_timezone
    quota_timezone: str = "America/Chicago"  # [UNCONFIRMED] CST vs Central with DST: we follow the zone
    max_uri_bytes: int = 8 * 1024  # -> HTTP 414
    max_body_bytes: int = 1024 * 1024  # -> HTTP 413
    enforce: bool = True


class TokenSettings(_Cfg):
    lifetime_s: int = 3600
    accept_query_param: bool = False  # legacy access_token=...; removed by Adobe [CONFLICT on the date]
    error_body: Literal["invalid_client", "unauthorized"] = "invalid_client"  # [UNCONFIRMED]


class BulkSettings(_Cfg):
    queue_slots: int = 10  # queued + processing, all export types and all API users -> 1029
    processing_slots: int = 2
    daily_export_bytes: int = 500 * 1024 * 1024  # metered on fileSize -> 1029 "Export daily quota"
    status_refresh_s: float = 60.0  # status changes become visible at most this often
    job_overhead_s: float = 120.0  # per-job time before rows are produced
    rows_per_s: float = 50_000.0  # processing speed after the overhead
    file_retention_days: float = 7.0  # [CONFLICT] 7 vs 10 days
    max_window_days: int = 31
    window_error_code: str = "1003"  # [UNCONFIRMED] code for a window wider than 31 days
    unsupported_filters: list[str] = Field(
        default_factory=list
    )  # e.g. ["updatedAt", "smartListName"] -> 1035
    cancelled_spelling: Literal["Cancelled", "Canceled"] = "Cancelled"  # [CONFLICT]
    ssv_delimiter: str = ";"  # [CONFLICT] semicolon vs space
    program_member_booleans: Literal["true_false", "zero_one"] = "true_false"  # [UNCONFIRMED]
    cancel_finished_job: Literal["error", "noop"] = "error"  # [UNCONFIRMED]
    enqueue_finished_job: Literal["error", "noop"] = "error"  # [UNCONFIRMED]
    # [UNCONFIRMED] Code for an unknown field in a bulk create. 1006 by default: the error-code table pairs
    # 1006 with "Field '%s' not found" ("an included field in the call is not a valid field"), the lead REST
    # reads answer an unknown `fields` entry with it, and bulk create validates `fields` against the same
    # describe. The 1003 claim comes from one client's code comment, with no captured response behind it.
    unknown_field_error_code: str = "1006"
    # [UNCONFIRMED] Delete Lead (37) in an activity export's activityTypeIds. The docs say only that the bulk
    # activity export "does not support" it (use Get Deleted Leads). "refuse" (default): 1003 at create,
    # like every other filter value Marketo validates there; "no_rows": accepted, and the file has no Delete
    # Lead rows. Refusing is the stricter choice: a client that copes with it copes with an empty export too.
    delete_lead_in_activity_export: Literal["refuse", "no_rows"] = "refuse"
    activity_fields: Literal["optional", "required"] = "optional"  # [CONFLICT] docs: optional; swagger: req.
    # [UNCONFIRMED] A text cell whose value is the word `null`. Every capture writes an empty value as a bare
    # `null` and quotes a cell only where it must (delimiter, quote, CR, LF); none holds the text "null".
    # "quoted" (default): written `"null"`, so a reader tells it from an empty value, as a writer that
    # quotes where needed would; "bare": written `null`, the same bytes as an empty value (a reader then
    # reads NULL: nothing in the file can tell them apart).
    null_text: Literal["quoted", "bare"] = "quoted"
    # [CONFLICT] PM filter nurtureCadence: swagger `paus` (field length 4) vs docs `pause`; `norm` in both.
    nurture_cadence_pause: Literal["paus", "pause"] = "paus"


class BehaviourSettings(_Cfg):
    unknown_status_on_member_sync: Literal["request_error", "record_skip"] = "request_error"  # 1025 [UNCONF.]
    trigger_inactive_error_code: str = "1003"  # [UNCONFIRMED]
    trigger_too_many_leads_error_code: str = "1003"  # [UNCONFIRMED]
    too_many_activity_types_error_code: str = "1003"  # [UNCONFIRMED]
    schedule_trigger_campaign_error_code: str = "1003"  # [UNCONFIRMED] Schedule Campaign on a trigger one
    # Get Lead Activities / Lead Changes with a listId of at least this many members -> 1003, from this
    # date on (the sandbox clock's UTC date). [CONFLICT] 30 Sep 2026 vs 30 Dec 2026.
    list_id_member_limit: int = Field(10_000, ge=1)
    list_id_limit_from: date = date(2026, 9, 30)
    merged_lead_lookup: Literal["empty", "winner"] = "empty"  # [UNCONFIRMED] Get Lead by Id on a loser
    enforce_retention: bool = True  # Marketo's activity retention (90 days / 25 months)
    max_empty_activity_pages: int = 2  # empty pages with moreResult:true the server may emit in a row
    gzip_min_bytes: int = 1024
    # [UNCONFIRMED] Get Tokens by Folder Id lists "the available My Tokens in the target folder"; the UI's
    # My Tokens tab of a program shows the tokens it inherits from its folders too. Default: included,
    # nearest definition wins; False: only the folder's own.
    tokens_include_inherited: bool = True
    # [UNCONFIRMED] Get Tokens for a folder or program that does not exist: not documented. 702 ("No data
    # found for given search scenario") by default; "710" (Parent Folder Not Found); "warning" answers
    # success with the asset API's "No assets found" warning.
    unknown_token_folder_code: Literal["702", "710", "warning"] = "702"


class NeighbourSettings(_Cfg):
    """Other integrations on the same subscription (a CRM sync, a BI extract, a webinar app), sharing every
    limit with us as Marketo shares them (docs/marketo.md §4.1). Amounts are shares of the instance's
    limits, scaled by `level`: 0 (default) leaves the instance to us; 1 is the full load described here."""

    level: float = Field(0.0, ge=0, le=1)
    users: list[str] = Field(
        default_factory=lambda: ["crm-sync@customer", "bi-extract@customer", "webinar-app@customer"]
    )
    rate_share: float = Field(0.4, ge=0, le=1, description="of the rate window, while their burst is on")
    daily_share: float = Field(0.3, ge=0, le=1, description="of the daily call quota, over a whole day")
    in_flight_share: float = Field(0.3, ge=0, le=1, description="of the in-flight limit, during a burst")
    call_cycle_s: float = Field(600.0, gt=0, description="their bursts start every this many seconds")
    processing_slots: int = Field(1, ge=0, description="export processing slots they hold while busy")
    queue_share: float = Field(0.2, ge=0, le=1, description="of the export queue their jobs keep waiting")
    export_cycle_s: float = Field(1800.0, gt=0, description="their export work repeats this often")
    export_busy_share: float = Field(0.5, ge=0, le=1, description="of each export cycle they process")
    export_share: float = Field(0.2, ge=0, le=1, description="of the daily export bytes, over a day")


class DataSettings(_Cfg):
    seed: int = 42
    people: int = 2_000
    activities_per_person: float = 20.0
    companies_ratio: float = 0.1  # companies per person
    programs: int = 40
    history_days: int = 760
    interesting_moments: bool = True  # some instances lack Interesting Moment (46) entirely


Profile = Literal["fast", "marketo"]


class SandboxConfig(_Cfg):
    profile: Profile = "fast"
    data: DataSettings = Field(default_factory=DataSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    bulk: BulkSettings = Field(default_factory=BulkSettings)
    behaviour: BehaviourSettings = Field(default_factory=BehaviourSettings)
    neighbours: NeighbourSettings = Field(default_factory=NeighbourSettings)
    clients: list[ApiClient] = Field(
        default_factory=lambda: [
            ApiClient(
                client_id="molequle-sandbox", client_secret="sandbox-secret", api_user="molequle@sandbox"
            ),
            ApiClient(client_id="other-integration", client_secret="other-secret", api_user="other@sandbox"),
        ]
    )

    @classmethod
    def for_profile(cls, profile: Profile, **overrides: object) -> SandboxConfig:
        """`fast`: zero-latency bulk jobs and status refresh, for tests. `marketo`: minutes per job."""
        config = cls.model_validate({"profile": profile, **overrides})
        if profile == "fast":
            config.bulk.status_refresh_s = 0.0
            config.bulk.job_overhead_s = 0.0
            config.bulk.rows_per_s = 0.0  # 0 means instant
        return config


DEFAULT_CLIENT_ID = "molequle-sandbox"
DEFAULT_CLIENT_SECRET = "sandbox-secret"
