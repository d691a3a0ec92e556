"""Static catalogues of the simulated instance: activity types, channels, campaigns, lists and word pools.

Everything here is plain data in the Marketo wire shapes (docs/marketo.md §8, §9.2, §10, §13);
`generator.py` instantiates it for one instance. Activity type names and attribute names follow the captured
`types.json` records (fixture `real_airbyte__activity_types_records.jsonl`) where they exist.
"""

from __future__ import annotations

from typing import Any

# --- activity types (types.json shape) ----------------------------------------------------------------


def _attrs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "dataType": data_type} for name, data_type in pairs]


def _type(
    type_id: int, name: str, description: str, primary: tuple[str, str] | None, *attrs: tuple[str, str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": type_id, "name": name, "description": description}
    if primary is not None:  # New Lead has no primaryAttribute in captured types.json (docs/marketo.md §8.1)
        entry["primaryAttribute"] = {"name": primary[0], "dataType": primary[1]}
    entry["attributes"] = _attrs(*attrs)
    return entry


_S, _I, _B, _T = "string", "integer", "boolean", "text"
_MAILING = ("Mailing ID", _I)
_EMAIL_RUN = (
    ("Campaign Run ID", _I),
    ("Choice Number", _I),
    ("Has Predictive", _B),
    ("Step ID", _I),
    ("Test Variant", _I),
)

ACTIVITY_TYPES: list[dict[str, Any]] = [
    _type(
        1,
        "Visit Webpage",
        "User visits a web page",
        ("Webpage ID", _I),
        ("Client IP Address", _S),
        ("Query Parameters", _S),
        ("Referrer URL", _S),
        ("Search Engine", _S),
        ("Search Query", _S),
        ("User Agent", _S),
        ("Webpage URL", _S),
    ),
    _type(
        2,
        "Fill Out Form",
        "User fills out and submits a form on web page",
        ("Webform ID", _I),
        ("Client IP Address", _S),
        ("Form Fields", _T),
        ("Query Parameters", _S),
        ("Referrer URL", _S),
        ("User Agent", _S),
        ("Webpage ID", _I),
    ),
    _type(
        3,
        "Click Link",
        "User clicks link on a page",
        ("Link ID", _I),
        ("Client IP Address", _S),
        ("Query Parameters", _S),
        ("Referrer URL", _S),
        ("User Agent", _S),
        ("Webpage ID", _I),
    ),
    _type(6, "Send Email", "Send Marketo Email to a person", _MAILING, *_EMAIL_RUN),
    _type(7, "Email Delivered", "Marketo Email is delivered to a lead/contact", _MAILING, *_EMAIL_RUN),
    _type(
        8,
        "Email Bounced",
        "Marketo Email is bounced for a lead",
        _MAILING,
        ("Campaign Run ID", _I),
        ("Category", _S),
        ("Choice Number", _I),
        ("Details", _S),
        ("Email", _S),
        ("Has Predictive", _B),
        ("Step ID", _I),
        ("Subcategory", _S),
        ("Test Variant", _I),
    ),
    _type(
        9,
        "Unsubscribe Email",
        "Person unsubscribed from Marketo Emails",
        _MAILING,
        ("Campaign Run ID", "Integer"),  # casing as captured (docs/marketo.md §8.1)
        ("Client IP Address", _S),
        ("Form Fields", _T),
        ("Has Predictive", _B),
        ("Query Parameters", _S),
        ("Referrer URL", _S),
        ("Test Variant", _I),
        ("User Agent", _S),
        ("Webform ID", _I),
        ("Webpage ID", _I),
    ),
    _type(
        10,
        "Open Email",
        "User opens Marketo Email",
        _MAILING,
        ("Bot Activity Pattern", _S),
        ("Campaign Run ID", _I),
        ("Choice Number", _I),
        ("Device", _S),
        ("Has Predictive", _B),
        ("Is Bot Activity", _B),
        ("Is Mobile Device", _B),
        ("Platform", _S),
        ("Step ID", _I),
        ("Test Variant", _I),
        ("User Agent", _S),
    ),
    _type(
        11,
        "Click Email",
        "User clicks on a link in a Marketo Email",
        _MAILING,
        ("Bot Activity Pattern", _S),
        ("Campaign Run ID", _I),
        ("Choice Number", _I),
        ("Device", _S),
        ("Is Bot Activity", _B),
        ("Is Mobile Device", _B),
        ("Is Predictive", _B),
        ("Link", _S),
        ("Link ID", _S),
        ("Platform", _S),
        ("Step ID", _I),
        ("Test Variant", _I),
        ("User Agent", _S),
    ),
    _type(
        12,
        "New Lead",
        "New person/record is added to the lead database",
        None,
        ("Created Date", "date"),
        ("Form Name", _S),
        ("Lead Source", _S),
        ("List Name", _S),
        ("SFDC Type", _S),
        ("Source Type", _S),
        ("API Method Name", _S),
        ("Modifying User", _S),
        ("Request Id", _S),
    ),
    _type(
        13,
        "Change Data Value",
        "Changed attribute value for a person",
        ("Attribute Name", _S),
        ("Old Value", _S),
        ("New Value", _S),
        ("Reason", _S),
        ("Source", _S),
        ("API Method Name", _S),
        ("Modifying User", _S),
        ("Request Id", _S),
    ),
    _type(
        22,
        "Change Score",
        "Changed score value for a person",
        ("Score Name", _S),
        ("Change Value", _S),
        ("Old Value", _I),
        ("New Value", _I),
        ("Reason", _S),
    ),
    _type(24, "Add to List", "Person added to a list", ("List ID", _I), ("Source", _S)),
    _type(25, "Remove from List", "Person removed from a list", ("List ID", _I), ("Source", _S)),
    _type(
        27,
        "Email Bounced Soft",
        "Marketo Email soft bounces",
        _MAILING,
        ("Campaign Run ID", _I),
        ("Category", _S),
        ("Choice Number", _I),
        ("Details", _S),
        ("Email", _S),
        ("Step ID", _I),
        ("Subcategory", _S),
    ),
    _type(
        32,
        "Merge Leads",
        "Merge two or more persons into one",
        ("Lead ID", _I),
        ("Merge IDs", _T),
        ("Merged in Sales", _B),
        ("Merge Source", _S),
        ("Master Updated", _B),
    ),
    _type(37, "Delete Lead", "Delete a person", ("Lead ID", _I)),
    _type(
        46,
        "Interesting Moment",
        "Interesting moment",
        None,
        ("Type", _S),
        ("Description", _S),
        ("Source", _S),
        ("Date", "datetime"),
    ),
    _type(47, "Request Campaign", "Request a campaign", ("Campaign ID", _I), ("Source", _S)),
    _type(
        104,
        "Change Status in Progression",
        "Change a status in a progression",
        ("Program ID", _I),
        ("Old Status ID", _I),
        ("New Status ID", _I),
        ("Acquired By", _B),
        ("Old Status", _S),
        ("New Status", _S),
        ("Program Member ID", _I),
        ("Success", _B),
        ("Reason", _S),
    ),
    _type(
        113,
        "Add to Nurture",
        "Add to a nurture program",
        ("Program ID", _I),
        ("Track ID", _I),
        ("Track Name", _S),
    ),
    _type(
        123, "Change Program Member Data", "Change program member data", ("Program ID", _I), ("Source", _S)
    ),
]

INTERESTING_MOMENT = 46
NEW_LEAD, CHANGE_DATA_VALUE, CHANGE_SCORE, ADD_TO_LIST = 12, 13, 22, 24
UNSUBSCRIBE_EMAIL = 9
MERGE_LEADS, DELETE_LEAD, CHANGE_STATUS = 32, 37, 104
EMAIL_TYPES = (6, 7, 8, 10, 11, 27)

# The 11 default types the brief names, with their share of "random" (non-structural) activities.
ACTIVITY_MIX: dict[int, float] = {
    6: 0.22,
    7: 0.21,
    10: 0.15,
    11: 0.05,
    8: 0.006,
    27: 0.014,
    46: 0.04,
    2: 0.03,
    1: 0.16,
    3: 0.04,
    22: 0.05,
    13: 0.03,
}


def activity_types(interesting_moments: bool) -> list[dict[str, Any]]:
    """The types.json list of an instance; some instances lack Interesting Moment entirely."""
    return [dict(t) for t in ACTIVITY_TYPES if interesting_moments or t["id"] != INTERESTING_MOMENT]


# --- channels (program types) with progression statuses (docs/marketo.md §9.2) -----------------------
# (channel name, program type, [(status, success)]) — every channel starts with "Not in Program" at step 0.
CHANNEL_SPECS: tuple[tuple[str, str, tuple[tuple[str, bool], ...]], ...] = (
    (
        "Webinar",
        "Event with Webinar",
        (
            ("Not in Program", False),
            ("Invited", False),
            ("Registered", False),
            ("No Show", False),
            ("Attended", True),
            ("Attended On-demand", True),
        ),
    ),
    (
        "Live Event",
        "Event",
        (
            ("Not in Program", False),
            ("Invited", False),
            ("Registered", False),
            ("Waitlisted", False),
            ("No Show", False),
            ("Attended", True),
        ),
    ),
    (
        "Email Blast",
        "Email",
        (
            ("Not in Program", False),
            ("Sent", False),
            ("Opened", False),
            ("Clicked", True),
            ("Bounced", False),
            ("Unsubscribed", False),
        ),
    ),
    (
        "Nurture",
        "Engagement",
        (("Not in Program", False), ("Member", False), ("Engaged", True), ("Exhausted", False)),
    ),
    (
        "Content",
        "Default",
        (("Not in Program", False), ("Viewed", False), ("Filled-out Form", False), ("Influenced", True)),
    ),
    (
        "Online Advertising",
        "Default",
        (
            ("Not in Program", False),
            ("Invited", False),
            ("Visited", False),
            ("Clicked", False),
            ("Converted", True),
        ),
    ),
    (
        "Tradeshow",
        "Event",
        (
            ("Not in Program", False),
            ("Invited", False),
            ("Visited Booth", False),
            ("Contacted", False),
            ("Influenced", True),
        ),
    ),
)

STEP_SIZE = 10  # step numbers as Marketo shows them: 0, 10, 20, ...
MAX_STATUSES_PER_CHANNEL = 32  # status ids are channel_id * this + position (stable across renames)


def status_id(channel_id: int, position: int) -> int:
    """The numeric status id activities report (`Old Status ID`/`New Status ID`)."""
    return channel_id * MAX_STATUSES_PER_CHANNEL + position


PROGRAM_STATUS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "Default": ("",),
    "Event": ("",),
    "Event with Webinar": ("",),
    "Engagement": ("on", "off"),
    "Email": ("unlocked", "locked", "completed"),
}
PROGRAM_TOPICS: tuple[str, ...] = (
    "Data Mesh",
    "AI Readiness",
    "Customer 360",
    "Pricing Update",
    "Product Launch",
    "Partner Summit",
    "Security Briefing",
    "Analytics Roadshow",
    "Welcome Series",
    "Quarterly Newsletter",
    "Cloud Migration",
    "Retail Insights",
    "Healthcare Forum",
    "Developer Day",
)
# UI URL prefix of each program type (observed: #PG default, #ME event, #NP engagement, #EBP email)
PROGRAM_URL_PREFIX = {
    "Default": "PG",
    "Event": "ME",
    "Event with Webinar": "ME",
    "Engagement": "NP",
    "Email": "EBP",
}
FOLDERS: tuple[tuple[int, str], ...] = (
    (1001, "Marketing Activities"),
    (1002, "Events"),
    (1003, "Nurture"),
    (1004, "Content"),
    (1005, "Operational"),
)

# --- smart campaigns the brief requires (docs/marketo.md §13.1); generic ones are added by the generator
# (name, type, isActive, isRequestable, status, program "My Tokens")
REQUIRED_CAMPAIGNS: tuple[tuple[str, str, bool, bool, str, dict[str, str]], ...] = (
    (
        "Molequle Welcome Trigger",
        "trigger",
        True,
        True,
        "Active",
        {"Welcome Message": "Welcome to Molequle!", "Offer URL": "https://www.example.com/offer"},
    ),
    ("Molequle Quarterly Newsletter", "batch", False, False, "Never Run", {"Edition": "Q1"}),
    ("Molequle Inactive Trigger", "trigger", False, True, "Inactive", {"Message": "Paused"}),
    ("Molequle Form Fill Trigger", "trigger", True, False, "Active", {}),  # active but not requestable
)

# --- program "My Tokens" (docs/marketo.md §13.4): by channel, plus the folder tokens every program below a
# folder inherits
# (type, value) per token name; token types as the Tokens API lists them (date, number, rich text, score,
# sfdc campaign, text).
CHANNEL_TOKENS: dict[str, dict[str, tuple[str, str]]] = {
    "Webinar": {
        "Event Date": ("date", "2026-05-14"),
        "Webinar URL": ("text", "https://webinar.example.com/j/42"),
    },
    "Live Event": {"Event Date": ("date", "2026-06-02"), "Venue": ("text", "Moscone West, San Francisco")},
    "Email Blast": {"Email Subject": ("text", "What's new this month")},
    "Nurture": {"Nurture Stream": ("text", "Default stream")},
    "Content": {"Asset URL": ("text", "https://www.example.com/resources/guide.pdf")},
    "Online Advertising": {"Landing Page URL": ("text", "https://www.example.com/lp/offer")},
    "Tradeshow": {"Booth Number": ("number", "214")},
}
FOLDER_TOKENS: dict[int, dict[str, tuple[str, str]]] = {
    1001: {
        "Company Name": ("text", "Molequle"),
        "Email Footer": ("rich text", "<p>Molequle Inc., 1 Main St, Springfield</p>"),
        "Support Email": ("text", "support@molequle.example"),
    },
    1002: {"Event Team": ("text", "events@molequle.example")},
    1003: {"Nurture Score": ("score", "+5")},
}

# --- email assets (emails.json): three per program, named as activities show them ("Program.Email 2")
EMAILS_PER_PROGRAM = 3
EMAIL_TEMPLATES = (1001, 1002, 1003)
EMAIL_FROM = ("Molequle Marketing", "marketing@molequle.example")

# --- segmentations (Get Segmentations) and their segments; every segmentation has a Default segment
SEGMENTATION_SPECS: tuple[
    tuple[str, str, str, tuple[str, ...]], ...
] = (  # (name, description, status, segments)
    ("Region", "Where the person is", "approved", ("North America", "EMEA", "APAC", "LATAM", "Default")),
    (
        "Industry",
        "The person's company industry",
        "approved",
        ("Software", "Financial Services", "Healthcare", "Default"),
    ),
    (
        "Lifecycle Stage",
        "Funnel position (being reworked)",
        "draft",
        ("Prospect", "MQL", "SQL", "Customer", "Default"),
    ),
)
# Captured segmentations sit in folder {"type": "Program", "value": 16, "folderName": null}
# (programs/real_airbyte__segmentation_records.jsonl): the Lead Database's Segmentations node.
SEGMENTATION_FOLDER = {"type": "Program", "value": 16, "folderName": None}

# --- smart lists: rules evaluated by truth.smart_list_lead_ids ----------------------------------------
ALL_PEOPLE_SMART_LIST = "All People for Molequle"
SMART_LIST_SPECS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (ALL_PEOPLE_SMART_LIST, "Everyone who has not unsubscribed", {"kind": "subscribed"}),
    ("High Score Leads", "Lead score of at least 100", {"kind": "min_lead_score", "value": 100}),
    ("German Leads", "Country is Germany", {"kind": "country", "value": "Germany"}),
)
STATIC_LIST_SPECS: tuple[tuple[str, float], ...] = (  # (name, share of people)
    ("Molequle Seed List", 0.02),
    ("Webinar Attendees 2024", 0.05),
    ("Do Not Call", 0.01),
)

# --- word pools for people and companies --------------------------------------------------------------
# (display, ascii) so emails stay ASCII (Sync Leads requires it) while names carry real-world characters.
FIRST_NAMES: tuple[tuple[str, str], ...] = (
    *(
        (n, n.lower())
        for n in (
            "James",
            "Mary",
            "Robert",
            "Patricia",
            "John",
            "Jennifer",
            "Michael",
            "Linda",
            "David",
            "Elizabeth",
            "William",
            "Barbara",
            "Richard",
            "Susan",
            "Joseph",
            "Jessica",
            "Thomas",
            "Sarah",
            "Charles",
            "Karen",
            "Daniel",
            "Lisa",
            "Matthew",
            "Nancy",
            "Anthony",
            "Betty",
            "Mark",
            "Sandra",
            "Paul",
            "Ashley",
            "Steven",
            "Emily",
            "Andrew",
            "Donna",
            "Kevin",
            "Michelle",
            "Brian",
            "Carol",
            "George",
            "Amanda",
            "Priya",
            "Wei",
            "Ahmed",
            "Olga",
            "Hiroshi",
            "Fatima",
            "Lukas",
            "Sofia",
            "Mateo",
            "Aisha",
        )
    ),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Björn", "bjorn"),
    ("Chloé", "chloe"),
    ("Søren", "soren"),
)
LAST_NAMES: tuple[tuple[str, str], ...] = (
    *(
        (n, n.lower())
        for n in (
            "Smith",
            "Johnson",
            "Williams",
            "Brown",
            "Jones",
            "Garcia",
            "Miller",
            "Davis",
            "Rodriguez",
            "Martinez",
            "Hernandez",
            "Lopez",
            "Gonzalez",
            "Wilson",
            "Anderson",
            "Thomas",
            "Taylor",
            "Moore",
            "Jackson",
            "Martin",
            "Lee",
            "Perez",
            "Thompson",
            "White",
            "Harris",
            "Sanchez",
            "Clark",
            "Ramirez",
            "Lewis",
            "Robinson",
            "Walker",
            "Young",
            "Allen",
            "King",
            "Wright",
            "Scott",
            "Torres",
            "Nguyen",
            "Hill",
            "Flores",
            "Patel",
            "Kim",
            "Chen",
            "Tanaka",
            "Ivanova",
            "Schmidt",
            "Rossi",
            "Kowalski",
            "Okafor",
            "Haddad",
        )
    ),
    ("O'Brien", "obrien"),
    ("Müller", "muller"),
    ("Núñez", "nunez"),
    ("Ødegård", "odegard"),
    ("D'Angelo", "dangelo"),
    ("van der Berg", "vanderberg"),
)
# Titles: a few carry CSV-hostile characters (quote, comma, LF, CR, NUL, U+2028) to exercise parsers.
TITLES: tuple[str, ...] = (
    "Marketing Manager",
    "VP Marketing",
    "Data Engineer",
    "CTO",
    "CEO",
    "Sales Director",
    "Account Executive",
    "Product Manager",
    "Analyst",
    "Head of Growth",
    "Software Engineer",
    "Operations Manager",
    "CFO",
    "Demand Generation Lead",
    "Customer Success Manager",
    "Consultant",
)
AWKWARD_TITLES: tuple[str, ...] = (
    'Head of "Growth"',
    "VP, Sales & Marketing",
    "Director\nMarketing Ops",
    "Engineer\r\nPlatform",
    "Ops\x00Manager",
    "营销总监\u2028北京",
    'Chief "Data", Officer',
)
AWKWARD_TITLE_SHARE = 0.01
COUNTRIES: tuple[str, ...] = (
    "United States",
    "United States",
    "United States",
    "United Kingdom",
    "Germany",
    "France",
    "Canada",
    "Australia",
    "Japan",
    "India",
    "Brazil",
    "Netherlands",
    "Spain",
    "Sweden",
    "Singapore",
    "Mexico",
)
INDUSTRIES: tuple[str, ...] = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Media",
    "Telecommunications",
    "Energy",
    "Logistics",
    "Pharmaceuticals",
    "Hospitality",
)
COMPANY_WORDS_A: tuple[str, ...] = (
    "Acme",
    "Blue",
    "Bright",
    "Cedar",
    "Delta",
    "Ever",
    "First",
    "Global",
    "Green",
    "Harbor",
    "Iron",
    "Juniper",
    "Keystone",
    "Lumen",
    "Maple",
    "North",
    "Nova",
    "Orbit",
    "Pioneer",
    "Quantum",
    "River",
    "Silver",
    "Summit",
    "Terra",
    "United",
    "Vertex",
    "West",
    "Zenith",
    "Apex",
    "Beacon",
)
COMPANY_WORDS_B: tuple[str, ...] = (
    "Analytics",
    "Systems",
    "Logistics",
    "Health",
    "Foods",
    "Energy",
    "Labs",
    "Capital",
    "Media",
    "Robotics",
    "Networks",
    "Partners",
    "Works",
    "Bio",
    "Dynamics",
    "Solutions",
    "Retail",
    "Motors",
    "Software",
    "Cloud",
)
LEGAL_SUFFIXES: tuple[str, ...] = ("Inc", "LLC", "Ltd", "GmbH", "Corp", "Group")
PERSONAL_DOMAINS: tuple[str, ...] = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com")
PERSONAL_EMAIL_SHARE = 0.12
NULL_EMAIL_SHARE = 0.005
UNSUBSCRIBED_SHARE = 0.05
