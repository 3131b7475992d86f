"""A team's work kept beyond the event: archive (per team, per part, resumable), verify (restore into scratch and
compare), restore (into this event or a new one), and the audit trail. Each part archives what it holds through
its hooks (`Part.archive`, `verify_archive`, `restore`, `work_since`, `audit`); this package only orchestrates:
where files go, the manifest, resuming, verifying, progress."""
