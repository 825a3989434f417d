"""After the run: incidents, postmortems, follow-up runbooks, and importing procedures."""
