"""`datathon serve`: the organizer's live dashboard and the team portal, over the same library functions and
result objects as `status`, `check` and the lifecycle verbs (no second source of truth), with the watcher."""
