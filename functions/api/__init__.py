"""notify's REST API deployable."""
