"""A faithful local Marketo: REST, Asset and Bulk APIs with limits, faults, a virtual clock and churn."""
