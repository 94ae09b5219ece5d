"""The records of the source rules (§11): work log, work orders, complaints, incident reports,
waivers and the project head's weekly review, and the weekly pack built from them.

Every record is a command (gateway/commands.py) applied by the single writer and kept in the
store's `commands` table with its actor and time; `ledger` folds those rows into the records,
`apply` checks and applies the commands, `worklog` and `weekly` build the reports, and
`html`, `csv`, `pdf` render them.
"""
