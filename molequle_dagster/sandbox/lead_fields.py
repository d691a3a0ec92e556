"""The lead fields of the simulated instance: what Describe Lead / Describe Lead2 report, what Sync Leads
may write, what a bulk lead export may ask for.

The standard fields are those of a real instance's describe (fixture
`leads/real_grouparoo__session_leads_describe_2021-11.json`, 2021): the same ids, REST and SOAP names, display
names, data types, lengths and read-only flags, in the same order; that instance's own test custom fields
(`textarea_field` … `currency_field`) are replaced by a few custom fields of our own (ids from 1201).

A field is *stored* (a column of `InstanceState.people`: the fields the project syncs, with the semantics the
truth views, churn, merges and write-back rely on) or *derived* (computed per row at read time from the
person's profile seed and company by `lead_view`, so 100 fields of 1M people cost nothing until read).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from molequle_dagster.sandbox.model import PEOPLE_SCHEMA, TS


@dataclass(frozen=True)
class LeadField:
    id: int
    name: str  # REST API name
    display: str
    data_type: str  # Marketo dataType as describe reports it
    length: int | None
    read_only: bool  # rest.readOnly
    soap: (
        str | None
    )  # soap.name; None when describe has no soap child (soap.readOnly is false in the capture)
    # A custom field: changing it moves only the hidden last-modified time (docs/marketo.md §5.7).
    custom: bool = False

    @property
    def stored(self) -> bool:
        return self.name in PEOPLE_SCHEMA.names

    @property
    def arrow_type(self) -> pa.DataType:
        if self.stored:
            return PEOPLE_SCHEMA.field(self.name).type
        return ARROW_TYPES.get(self.data_type, pa.string())


ARROW_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "score": pa.int64(),
    "reference": pa.int64(),  # ids: partition, program, company, person (digits in exports)
    "float": pa.float64(),
    "currency": pa.float64(),
    "percent": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": TS,
}

# id | REST name | display name | dataType | length | rest.readOnly (ro/rw) | soap name: as in the real
# describe, in its order (a blank length or soap name: the capture has none).
_STANDARD = """
   4|company                  |Company Name               |string   | 255|rw|Company
   5|site                     |Site                       |string   | 255|rw|Site
   6|billingStreet            |Billing Address            |text     |    |rw|BillingStreet
   7|billingCity              |Billing City               |string   | 255|rw|BillingCity
   8|billingState             |Billing State              |string   | 255|rw|BillingState
   9|billingCountry           |Billing Country            |string   | 255|rw|BillingCountry
  10|billingPostalCode        |Billing Postal Code        |string   | 255|rw|BillingPostalCode
  11|website                  |Website                    |url      | 255|rw|Website
  12|mainPhone                |Main Phone                 |string   | 255|rw|MainPhone
  15|annualRevenue            |Annual Revenue             |currency |    |rw|AnnualRevenue
  16|numberOfEmployees        |Num Employees              |integer  |    |rw|NumberOfEmployees
  17|industry                 |Industry                   |string   | 255|rw|Industry
  18|sicCode                  |SIC Code                   |string   |  40|rw|SICCode
  20|mktoCompanyNotes         |Company Notes              |text     |    |rw|MktoCompanyNotes
  41|externalCompanyId        |External Company Id        |string   |  50|rw|
  44|id                       |Id                         |integer  |    |rw|Id
  45|mktoName                 |Full Name                  |string   | 255|ro|
  46|personType               |Person Type                |string   |  50|rw|PersonType
  48|mktoIsPartner            |Is Partner                 |boolean  |    |rw|
  49|isLead                   |Is Lead                    |boolean  |    |rw|IsLead
  50|mktoIsCustomer           |Is Customer                |boolean  |    |rw|
  51|isAnonymous              |Is Anonymous               |boolean  |    |rw|
  52|salutation               |Salutation                 |string   | 255|rw|Salutation
  53|firstName                |First Name                 |string   | 255|rw|FirstName
  54|middleName               |Middle Name                |string   | 255|rw|MiddleName
  55|lastName                 |Last Name                  |string   | 255|rw|LastName
  56|email                    |Email Address              |email    | 255|rw|Email
  57|phone                    |Phone Number               |phone    | 255|rw|Phone
  58|mobilePhone              |Mobile Phone Number        |phone    | 255|rw|MobilePhone
  59|fax                      |Fax Number                 |phone    | 255|rw|Fax
  60|title                    |Job Title                  |string   | 255|rw|Title
  61|contactCompany           |Contact Company            |reference|    |ro|Contact Company
  62|dateOfBirth              |Date of Birth              |date     |    |rw|DateofBirth
  63|address                  |Address                    |text     |    |rw|Address
  64|city                     |City                       |string   | 255|rw|City
  65|state                    |State                      |string   | 255|rw|State
  66|country                  |Country                    |string   | 255|rw|Country
  67|postalCode               |Postal Code                |string   | 255|rw|PostalCode
  68|personTimeZone           |Person Time Zone           |string   | 255|ro|
  70|originalSourceType       |Original Source Type       |string   | 255|ro|OriginalSourceType
  71|originalSourceInfo       |Original Source Info       |string   |2000|ro|OriginalSourceInfo
  72|registrationSourceType   |Registration Source Type   |string   | 255|rw|RegistrationSourceType
  73|registrationSourceInfo   |Registration Source Info   |string   |2000|rw|RegistrationSourceInfo
  74|originalSearchEngine     |Original Search Engine     |string   | 255|ro|OriginalSearchEngine
  75|originalSearchPhrase     |Original Search Phrase     |string   | 255|ro|OriginalSearchPhrase
  76|originalReferrer         |Original Referrer          |url      | 255|ro|OriginalReferrer
  77|emailInvalid             |Email Invalid              |boolean  |    |rw|EmailInvalid
  78|emailInvalidCause        |Email Invalid Cause        |string   | 255|rw|EmailInvalidCause
  79|unsubscribed             |Unsubscribed               |boolean  |    |rw|Unsubscribed
  81|unsubscribedReason       |Unsubscribed Reason        |string   |2000|rw|UnsubscribedReason
  82|doNotCall                |Do Not Call                |boolean  |    |rw|DoNotCall
  83|mktoDoNotCallCause       |Do Not Call Cause          |string   | 255|rw|
  84|doNotCallReason          |Do Not Call Reason         |string   |2000|rw|DoNotCallReason
  85|marketingSuspended       |Marketing Suspended        |boolean  |    |rw|
  86|marketingSuspendedCause  |Marketing Suspended Cause  |string   | 255|rw|
  87|blackListed              |Black Listed               |boolean  |    |rw|
  88|blackListedCause         |Black Listed Cause         |string   | 255|rw|
  89|mktoPersonNotes          |Person Notes               |text     |    |rw|MktoPersonNotes
 103|anonymousIP              |Anonymous IP               |string   | 255|rw|AnonymousIP
 104|inferredCompany          |Inferred Company           |string   | 255|ro|InferredCompany
 105|inferredCountry          |Inferred Country           |string   | 255|ro|InferredCountry
 106|inferredCity             |Inferred City              |string   | 255|ro|
 107|inferredStateRegion      |Inferred State Region      |string   | 255|ro|
 108|inferredPostalCode       |Inferred Postal Code       |string   | 255|ro|
 109|inferredMetropolitanArea |Inferred Metropolitan Area |string   | 255|ro|
 110|inferredPhoneAreaCode    |Inferred Phone Area Code   |string   | 255|ro|
 123|emailSuspended           |Email Suspended            |boolean  |    |rw|
 124|emailSuspendedCause      |Email Suspended Cause      |string   | 255|rw|
 125|emailSuspendedAt         |Email Suspended At         |datetime |    |rw|
 126|department               |Department                 |string   | 255|rw|Department
 130|createdAt                |Created At                 |datetime |    |ro|
 131|updatedAt                |Updated At                 |datetime |    |ro|
 136|cookies                  |Cookies                    |string   | 255|rw|
 137|externalSalesPersonId    |External Sales Person Id   |string   |  50|rw|
 141|leadPerson               |Lead Person                |reference|    |ro|Lead Person
 143|leadRole                 |Role                       |string   |  50|rw|LeadRole
 144|leadSource               |Lead Source                |string   | 255|rw|LeadSource
 145|leadStatus               |Lead Status                |string   | 255|rw|LeadStatus
 146|leadScore                |Lead Score                 |integer  |    |rw|LeadScore
 147|urgency                  |Urgency                    |float    |    |rw|
 148|priority                 |Priority                   |integer  |    |rw|
 149|relativeScore            |Relative Score             |integer  |    |rw|
 150|relativeUrgency          |Relative Urgency           |integer  |    |rw|
 160|rating                   |Lead Rating                |string   | 255|rw|Rating
 181|personPrimaryLeadInterest|Primary Lead Interest      |reference|    |ro|Person Primary Lead Interest
 479|leadPartitionId          |Lead Partition Id          |reference|    |rw|Lead Partition ID
 485|leadRevenueCycleModelId  |Lead Revenue Cycle Model ID|reference|    |rw|Lead Revenue Cycle Model ID
 487|leadRevenueStageId       |Lead Revenue Stage ID      |reference|    |rw|Lead Revenue Stage ID
 625|acquisitionProgramId     |Acquisition Program        |reference|    |rw|Acquisition Program ID
 627|mktoAcquisitionDate      |Acquisition Date           |datetime |    |rw|
 830|ecids                    |ECIDs                      |string   | 255|ro|
"""
# Custom fields of the customer's instance (molequlePersonId is the one the project writes back).
_CUSTOM = """
1201|molequlePersonId         |Molequle Person Id         |string   | 255|rw|molequlePersonId
1202|productInterest          |Product Interest           |string   | 255|rw|productInterest
1203|accountTier              |Account Tier               |string   |  50|rw|accountTier
1204|gdprConsent              |GDPR Consent               |boolean  |    |rw|gdprConsent
1205|trialStartDate           |Trial Start Date           |date     |    |rw|trialStartDate
1206|npsScore                 |NPS Score                  |integer  |    |rw|npsScore
1207|lifetimeValue            |Lifetime Value             |currency |    |rw|lifetimeValue
1208|lastWebinarAt            |Last Webinar Attended      |datetime |    |rw|lastWebinarAt
1209|preferredLanguage        |Preferred Language         |string   |  50|rw|preferredLanguage
"""


def _parse(table: str, *, custom: bool) -> tuple[LeadField, ...]:
    fields = []
    for line in table.strip().splitlines():
        field_id, name, display, data_type, length, access, soap = (cell.strip() for cell in line.split("|"))
        fields.append(
            LeadField(
                int(field_id),
                name,
                display,
                data_type,
                int(length) if length else None,
                access == "ro",
                soap or None,
                custom=custom,
            )
        )
    return tuple(fields)


FIELDS: tuple[LeadField, ...] = (*_parse(_STANDARD, custom=False), *_parse(_CUSTOM, custom=True))
BY_NAME: dict[str, LeadField] = {f.name: f for f in FIELDS}
BY_DISPLAY: dict[str, LeadField] = {f.display: f for f in FIELDS}
NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELD_IDS: dict[str, int] = {f.name: f.id for f in FIELDS}
DISPLAY: dict[str, str] = {f.name: f.display for f in FIELDS}
STORED: tuple[str, ...] = tuple(f.name for f in FIELDS if f.stored)
DERIVED: tuple[str, ...] = tuple(f.name for f in FIELDS if not f.stored)
# `id` is writable in the capture (readOnly false) but only as Sync Leads' lookup key with updateOnly.
KEY_ONLY = frozenset({"id"})
WRITABLE: dict[str, LeadField] = {f.name: f for f in FIELDS if not f.read_only and f.name not in KEY_ONLY}
CUSTOM: frozenset[str] = frozenset(f.name for f in FIELDS if f.custom)
# describe2 searchableFields: the standard ones a non-CRM instance has (docs/marketo.md §5.7) and the custom
# string, email and integer fields. Any of them works as Get Leads' filterType and as Sync Leads' lookupField.
SEARCHABLE: tuple[str, ...] = (
    "id",
    "email",
    "molequlePersonId",
    "cookies",
    "leadPartitionId",
    "productInterest",
    "accountTier",
    "npsScore",
)
